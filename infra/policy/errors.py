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
