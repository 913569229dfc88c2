"""Exchange calendar: full holidays and early closes, from the offline `holidays` package."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import holidays


@dataclass(frozen=True)
class TradingDay:
    """What the exchange does on one local date."""

    date: dt.date
    is_holiday: bool
    is_early_close: bool
    name: str | None  # the holiday's or early close's name, for logs and schedules


@lru_cache(maxsize=64)
def _calendar(exchange: str, year: int) -> tuple[dict[dt.date, str], dict[dt.date, str]]:
    # `half_day` is the package's category for 13:00 early closes.
    full = holidays.financial_holidays(exchange, years=year)
    half = holidays.financial_holidays(exchange, years=year, categories=("half_day",))
    return dict(full.items()), dict(half.items())


def trading_day(exchange: str, date: dt.date) -> TradingDay:
    full, half = _calendar(exchange, date.year)
    if date in full:
        return TradingDay(date, is_holiday=True, is_early_close=False, name=full[date])
    if date in half:
        return TradingDay(date, is_holiday=False, is_early_close=True, name=half[date])
    return TradingDay(date, is_holiday=False, is_early_close=False, name=None)
