"""The one error type a policy raises, so callers can show it as a single line."""


class PolicyError(ValueError):
    """A policy field holds a value outside its allowed range.

    `field` is the dotted path a person would edit (``market_hours.min_replicas``).
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def within(self, parent: str) -> "PolicyError":
        """The same error, re-rooted under a parent field (``default`` + ``min_replicas``)."""
        return PolicyError(f"{parent}.{self.field}", self.problem)


def check_whole(field: str, value: object, low: int, high: int) -> None:
    """A whole number in [low, high], or a PolicyError naming the field and the range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(field, f"must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise PolicyError(field, f"must be between {low} and {high}, got {value}")
