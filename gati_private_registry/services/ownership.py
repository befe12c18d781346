"""Who owns a package: the teams owning a pattern that matches its name, or else the
users who published it (its maintainers). Helpers that join the caller's transaction."""
from __future__ import annotations

from fnmatch import fnmatchcase

from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from ..domain import Principal
from ..errors import Forbidden, NotFound
from ..storage.models import Maintainer, Team, TeamMember, TeamPackage


def check_readable(principal: Principal | None, name: str) -> None:
    """Reading ``name`` (packument, tarball, versions, its pages): a token limited to
    package patterns sees only those. Any other name answers exactly like a package that
    does not exist, before anything is looked up, so the answer leaks nothing about
    which names exist (the same 404 held and private versions get).

    Raises :class:`NotFound`."""
    if principal is not None and not principal.covers(name):
        raise NotFound(f"{name} is not in this registry")


def covered_names(principal: Principal, column: Any) -> Any:
    """A SQL condition on a package-name ``column`` for the names the principal's
    package patterns cover; None for a principal limited to no patterns (no condition).

    SQLite's LIKE ignores ASCII case where fnmatch does not; names this registry
    accepts are lower-case, so only legacy mixed-case upstream names could differ."""
    if not principal.packages:
        return None
    likes = []
    for pattern in principal.packages:
        # patterns hold only name characters, * and ? (teams.PACKAGE_PATTERN); escape
        # LIKE's own wildcards anyway, in case that ever widens
        escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        likes.append(column.like(escaped.replace("*", "%").replace("?", "_"), escape="\\"))
    return or_(*likes)


def owning_teams(s: Session, name: str) -> dict[int, str]:
    """The teams (id → name) owning a pattern that matches ``name``; empty when none."""
    rows = s.execute(select(TeamPackage.team_id, TeamPackage.pattern, Team.name)
                     .join(Team, Team.id == TeamPackage.team_id)).all()
    return {team_id: team for team_id, pattern, team in rows if fnmatchcase(name, pattern)}


def in_any_team(s: Session, user_id: int, team_ids: set[int] | dict[int, str]) -> bool:
    return bool(s.scalar(select(exists().where(TeamMember.user_id == user_id,
                                               TeamMember.team_id.in_(list(team_ids))))))


def check_may_publish(s: Session, principal: Principal, name: str,
                      maintainers: list[int]) -> None:
    """Publishing ``name``: only members of the owning team(s) when a team owns it;
    otherwise anyone for a new name, and only its maintainers after. Admins always.

    Raises :class:`Forbidden`."""
    if not principal.covers(name):
        raise Forbidden(f"this token is limited to other packages than {name}")
    if principal.is_admin:
        return
    teams = owning_teams(s, name)
    if teams:
        if not in_any_team(s, principal.user_id, teams):
            raise Forbidden(f"{name} belongs to team {', '.join(sorted(teams.values()))}: "
                            f"only its members may publish it")
        return
    if maintainers and principal.user_id not in maintainers:
        raise Forbidden(f"you are not a maintainer of {name}")


def check_owner(s: Session, principal: Principal, package_id: int, name: str) -> None:
    """Changing ``name`` (tags, deprecation, unpublish): its owning team's members, or
    else its maintainers, and admins. Raises :class:`Forbidden`."""
    if not principal.covers(name):
        raise Forbidden(f"this token is limited to other packages than {name}")
    if principal.is_admin:
        return
    teams = owning_teams(s, name)
    if teams:
        if in_any_team(s, principal.user_id, teams):
            return
    elif s.get(Maintainer, (package_id, principal.user_id)) is not None:
        return
    raise Forbidden(f"only the owners of {name} and admins may do this")
