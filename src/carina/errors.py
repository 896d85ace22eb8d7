"""The one error carina's layers raise for a refused action (re-exported as carina.api.CarinaError)."""

from __future__ import annotations


class CarinaError(Exception):
    """An action was refused; the message says why and what to do."""
