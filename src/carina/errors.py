"""The one error carina's layers raise for a refused action (re-exported as carina.api.CarinaError)."""

from __future__ import annotations


class CarinaError(Exception):
    """An action was refused; the message says why and what to do. `problems` lists each reason on its own
    when the planning rules found several (the message joins them)."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems) if problems else [message]
