"""What can go wrong in the client, each with an exit code that means something and a
hint that says what to do next."""
from __future__ import annotations

from dataclasses import dataclass

#: Exit codes (documented in ``gati --help``): scripts may rely on them.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_VERIFY = 5
EXIT_NETWORK = 6
EXIT_INVALID = 7


@dataclass(frozen=True)
class FieldProblem:
    """One problem with one field of what the user gave (a manifest, an argument)."""

    field: str
    message: str


class ClientError(Exception):
    """A failure to report to the user: ``message`` says what happened, ``hint`` what to
    do next; ``details`` lists field problems (all of them at once)."""

    exit_code = EXIT_FAILURE
    code = "failed"

    def __init__(self, message: str, hint: str | None = None,
                 details: list[FieldProblem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = list(details or [])


class UsageProblem(ClientError):
    exit_code = EXIT_USAGE
    code = "usage"


class AuthProblem(ClientError):
    exit_code = EXIT_AUTH
    code = "auth"


class NotFoundProblem(ClientError):
    exit_code = EXIT_NOT_FOUND
    code = "not_found"


class VerificationFailed(ClientError):
    """Integrity, signature or on-disk content does not match: nothing was trusted."""

    exit_code = EXIT_VERIFY
    code = "verification_failed"


class NetworkProblem(ClientError):
    exit_code = EXIT_NETWORK
    code = "network"


class InvalidInput(ClientError):
    exit_code = EXIT_INVALID
    code = "invalid"
