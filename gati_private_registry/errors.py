"""Domain errors: every failure a service reports is one of these.

Each class carries a stable ``code`` (what scripts match on) and the web layer maps the
class to an HTTP status in exactly one table (``web/__init__.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One validation problem: which field, and what is wrong with it."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class RegistryError(Exception):
    """Base of every error a service raises on purpose."""

    code: str = "registry_error"

    def __init__(self, message: str, *, details: list[FieldError] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[FieldError] = list(details or [])
        self.extra: dict[str, Any] = dict(extra or {})

    def __str__(self) -> str:
        if not self.details:
            return self.message
        parts = "; ".join(f"{d.field}: {d.message}" for d in self.details)
        return f"{self.message} ({parts})"


class ValidationFailed(RegistryError):
    """The input is malformed; ``details`` lists every problem found."""

    code = "validation_failed"


class NotFound(RegistryError):
    code = "not_found"


class Conflict(RegistryError):
    """The request contradicts the current state (for example a version that exists)."""

    code = "conflict"


class Unauthenticated(RegistryError):
    """No credentials, or credentials that do not identify anyone."""

    code = "unauthenticated"

    def __init__(self, message: str = "authentication required", *,
                 scheme: str = "Bearer", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.scheme = scheme


class Forbidden(RegistryError):
    """The caller is known but may not do this."""

    code = "forbidden"


class RateLimited(RegistryError):
    """Too many attempts (failed sign-ins): try again after ``retry_after`` seconds."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int = 60, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class TooLarge(RegistryError):
    code = "too_large"


class Unavailable(RegistryError):
    """A dependency (database, blob store) cannot be reached."""

    code = "unavailable"
