"""Plain values shared by every layer: roles, scopes, states, the acting principal."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from fnmatch import fnmatchcase


class Role(str, enum.Enum):
    ADMIN = "admin"
    APPROVER = "approver"
    PUBLISHER = "publisher"
    #: reads, and reads the audit log
    AUDITOR = "auditor"
    READER = "reader"

    @property
    def rank(self) -> int:
        """Order for "the highest role wins" when directory groups give several."""
        return _ROLE_RANK[self]


class Scope(str, enum.Enum):
    """What a token may do. Each scope includes the ones before it."""

    READ = "read"
    PUBLISH = "publish"
    APPROVE = "approve"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _SCOPE_RANK[self]

    def allows(self, needed: "Scope") -> bool:
        return self.rank >= needed.rank


_SCOPE_RANK = {Scope.READ: 0, Scope.PUBLISH: 1, Scope.APPROVE: 2, Scope.ADMIN: 3}
_ROLE_RANK = {Role.READER: 0, Role.AUDITOR: 1, Role.PUBLISHER: 2, Role.APPROVER: 3,
              Role.ADMIN: 4}

#: the highest scope a role may hold
ROLE_MAX_SCOPE = {Role.READER: Scope.READ, Role.AUDITOR: Scope.READ,
                  Role.PUBLISHER: Scope.PUBLISH, Role.APPROVER: Scope.APPROVE,
                  Role.ADMIN: Scope.ADMIN}


class VersionState(str, enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    QUARANTINED = "quarantined"


@dataclass(frozen=True)
class Principal:
    """Who is acting, and with how much power (the token's scope, capped by the role)."""

    user_id: int
    username: str
    role: Role
    scope: Scope
    token_id: int | None = None
    #: package-name patterns (fnmatch) the token is limited to; empty: every package
    packages: tuple[str, ...] = ()

    def can(self, needed: Scope) -> bool:
        return self.scope.allows(needed) and ROLE_MAX_SCOPE[self.role].allows(needed)

    def covers(self, name: str) -> bool:
        """Whether this token may act on package ``name`` at all."""
        return not self.packages or any(fnmatchcase(name, p) for p in self.packages)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN and self.scope is Scope.ADMIN

    @property
    def can_read_audit(self) -> bool:
        """The audit log is for admins and auditors."""
        return self.is_admin or self.role is Role.AUDITOR


@dataclass(frozen=True)
class Origin:
    """Where a request came from, for the audit log."""

    ip: str = ""
    user_agent: str = ""


SYSTEM_ORIGIN = Origin(ip="", user_agent="gati-registry")


def split_name(name: str) -> tuple[str | None, str]:
    """``@scope/pkg`` → ``("scope", "pkg")``; ``pkg`` → ``(None, "pkg")``."""
    if name.startswith("@") and "/" in name:
        scope, _, bare = name[1:].partition("/")
        return scope, bare
    return None, name


def tarball_filename(name: str, version: str) -> str:
    """npm's conventional tarball file name: the unscoped name, a dash, the version."""
    return f"{split_name(name)[1]}-{version}.tgz"
