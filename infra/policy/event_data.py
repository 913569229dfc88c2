"""Published market-event dates, kept as data with each year's source named.

FOMC: the statement is released at 14:00 ET on the second day of each scheduled meeting and
the Chair's press conference starts at 14:30 ET (both per the sources below). The window
13:50-14:45 at minimum 3 covers the statement burst and the start of the press conference.

Sources:
- 2026 (and January 2027): Federal Reserve Board press release "Federal Open Market
  Committee announces its tentative meeting schedule for 2025 and 2026", 9 August 2024
  (as republished by the ABA Banking Journal, 12 August 2024, and Mondo Visione).
- 2027 (and January 2028): Federal Reserve Board press release "Federal Open Market
  Committee announces its tentative meeting schedule for 2027", 5 September 2025.

Not included: CPI and Employment Situation release dates (BLS, 08:30 ET). The BLS release
calendars for 2026/2027 could not be retrieved from a primary source when this file was
written; add them here with their source (bls.gov/schedule/<year>/) or as `[[events]]` in a
policy file.
"""

from __future__ import annotations

import datetime as dt

from infra.policy.events import MarketEvent

FOMC_SOURCE_2026 = (
    "Federal Reserve press release 2024-08-09, FOMC tentative meeting schedule for 2025 and 2026"
)
FOMC_SOURCE_2027 = (
    "Federal Reserve press release 2025-09-05, FOMC tentative meeting schedule for 2027"
)

# Second (statement) day of each scheduled meeting.
FOMC_STATEMENT_DATES: tuple[tuple[dt.date, str], ...] = (
    *(
        (dt.date.fromisoformat(day), FOMC_SOURCE_2026)
        for day in (
            "2026-01-28",
            "2026-03-18",
            "2026-04-29",
            "2026-06-17",
            "2026-07-29",
            "2026-09-16",
            "2026-10-28",
            "2026-12-09",
        )
    ),
    *(
        (dt.date.fromisoformat(day), FOMC_SOURCE_2027)
        for day in (
            "2027-01-27",
            "2027-03-17",
            "2027-04-28",
            "2027-06-09",
            "2027-07-28",
            "2027-09-15",
            "2027-10-27",
            "2027-12-08",
            "2028-01-26",
        )
    ),
)

FOMC_RELEASE = dt.time(14, 0)
FOMC_WINDOW = (dt.time(13, 50), dt.time(14, 45))
FOMC_MIN_REPLICAS = 3


def fomc_event(date: dt.date, source: str) -> MarketEvent:
    return MarketEvent(
        date=date,
        release=FOMC_RELEASE,
        start=FOMC_WINDOW[0],
        end=FOMC_WINDOW[1],
        min_replicas=FOMC_MIN_REPLICAS,
        name="FOMC statement",
        source=source,
    )


PUBLISHED_EVENTS: tuple[MarketEvent, ...] = tuple(
    fomc_event(date, source) for date, source in FOMC_STATEMENT_DATES
)
