"""Teams: named groups of users. They own package patterns (only members publish,
tag, deprecate or unpublish matching packages: see :mod:`.ownership`), restrict who may
decide on versions under a pattern (``approvals.policies[].approvers``), and enterprise
sign-on maps directory groups onto them (:mod:`.signon`)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..domain import Origin, Principal
from ..errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from ..storage.db import Database
from ..storage.models import Team, TeamMember, TeamPackage, User
from . import audit
from .publish import now

#: lower-case words joined by single dashes, like npm scope names
TEAM_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
#: a package name with fnmatch wildcards: ``@payments/*``, ``payments-*``, ``@corp/ui-?``
PACKAGE_PATTERN = re.compile(r"^(@[a-z0-9*?][a-z0-9._~*?-]*/)?[a-z0-9*?][a-z0-9._~*?-]*$")


@dataclass(frozen=True)
class TeamInfo:
    name: str
    description: str
    members: tuple[str, ...]
    packages: tuple[str, ...] = ()


def _require_admin(principal: Principal | None) -> None:
    # None is the command line on the server itself (``gati-registry team ...``)
    if principal is not None and not principal.is_admin:
        raise Forbidden("managing teams needs an admin token")


class TeamService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, principal: Principal | None, name: str, description: str = "",
               origin: Origin | None = None) -> TeamInfo:
        """Create an empty team. Raises :class:`ValidationFailed` for a bad name,
        :class:`Conflict` when it exists, :class:`Forbidden` for non-admins."""
        _require_admin(principal)
        errors = []
        if not TEAM_NAME.match(name or ""):
            errors.append(FieldError("name", "1-100 characters: lower-case letters, digits, "
                                             "'.', '_' or '-', starting with a letter or digit"))
        if len(description) > 2000:
            errors.append(FieldError("description", "at most 2000 characters"))
        if errors:
            raise ValidationFailed("invalid team", details=errors)
        try:
            with self.db.write() as s:
                if s.scalar(select(exists().where(Team.name == name))):
                    raise Conflict(f"team {name} exists")
                s.add(Team(name=name, description=description, created_at=now()))
                s.flush()
                audit.record(s, principal or "gati-registry", "team.create", name, origin)
        except IntegrityError:  # a concurrent create of the same name
            raise Conflict(f"team {name} exists") from None
        return TeamInfo(name, description, ())

    def _team_and_user(self, s: Session, team: str, username: str) -> tuple[Team, User]:
        t = s.scalar(select(Team).where(Team.name == team))
        if t is None:
            raise NotFound(f"no team {team}")
        u = s.scalar(select(User).where(User.username == username))
        if u is None:
            raise NotFound(f"no user {username}")
        return t, u

    def add_member(self, principal: Principal | None, team: str, username: str,
                   origin: Origin | None = None) -> None:
        """Add ``username`` to ``team`` (no-op when already a member). Raises
        :class:`NotFound` for an unknown team or user, :class:`Forbidden`."""
        _require_admin(principal)
        with self.db.write() as s:
            t, u = self._team_and_user(s, team, username)
            if s.get(TeamMember, (t.id, u.id)) is None:
                s.add(TeamMember(team_id=t.id, user_id=u.id))
                audit.record(s, principal or "gati-registry", "team.member.add", team, origin,
                             user=username)

    def remove_member(self, principal: Principal | None, team: str, username: str,
                      origin: Origin | None = None) -> None:
        """Remove ``username`` from ``team``. Raises :class:`NotFound` (also when the
        user is not a member), :class:`Forbidden`."""
        _require_admin(principal)
        with self.db.write() as s:
            t, u = self._team_and_user(s, team, username)
            gone = s.connection().execute(delete(TeamMember).where(
                TeamMember.team_id == t.id, TeamMember.user_id == u.id)).rowcount
            if not gone:
                raise NotFound(f"{username} is not a member of {team}")
            audit.record(s, principal or "gati-registry", "team.member.remove", team, origin,
                         user=username)

    def own(self, principal: Principal | None, team: str, pattern: str,
            origin: Origin | None = None) -> None:
        """Give ``team`` the packages matching ``pattern`` (no-op when it has them).

        Raises :class:`ValidationFailed` for a malformed pattern, :class:`NotFound` for an
        unknown team, :class:`Forbidden` for non-admins."""
        _require_admin(principal)
        if not PACKAGE_PATTERN.match(pattern or "") or len(pattern) > 214:
            raise ValidationFailed("invalid package pattern", details=[FieldError(
                "pattern", "a package name or scope with * and ? wildcards, "
                           "like @payments/* or payments-*")])
        with self.db.write() as s:
            t = s.scalar(select(Team).where(Team.name == team))
            if t is None:
                raise NotFound(f"no team {team}")
            if s.get(TeamPackage, (t.id, pattern)) is None:
                s.add(TeamPackage(team_id=t.id, pattern=pattern))
                audit.record(s, principal or "gati-registry", "team.package.add", team, origin,
                             pattern=pattern)

    def disown(self, principal: Principal | None, team: str, pattern: str,
               origin: Origin | None = None) -> None:
        """Take ``pattern`` away from ``team``. Raises :class:`NotFound` (also when the
        team does not own it), :class:`Forbidden`."""
        _require_admin(principal)
        with self.db.write() as s:
            t = s.scalar(select(Team).where(Team.name == team))
            row = s.get(TeamPackage, (t.id, pattern)) if t is not None else None
            if row is None:
                raise NotFound(f"team {team} does not own {pattern}")
            s.delete(row)
            audit.record(s, principal or "gati-registry", "team.package.remove", team, origin,
                         pattern=pattern)

    def list(self) -> list[TeamInfo]:
        with self.db.read() as s:
            teams = s.scalars(select(Team).order_by(Team.name)).all()
            rows = s.execute(select(TeamMember.team_id, User.username)
                             .join(User, User.id == TeamMember.user_id)
                             .order_by(User.username)).all()
            owned = s.execute(select(TeamPackage.team_id, TeamPackage.pattern)
                              .order_by(TeamPackage.pattern)).all()
        members: dict[int, list[str]] = {}
        for team_id, username in rows:
            members.setdefault(team_id, []).append(username)
        patterns: dict[int, list[str]] = {}
        for team_id, pattern in owned:
            patterns.setdefault(team_id, []).append(pattern)
        return [TeamInfo(t.name, t.description, tuple(members.get(t.id, ())),
                         tuple(patterns.get(t.id, ()))) for t in teams]

    def is_member(self, user_id: int, team: str) -> bool:
        with self.db.read() as s:
            return bool(s.scalar(select(exists().where(
                TeamMember.user_id == user_id, TeamMember.team_id == Team.id,
                Team.name == team))))
