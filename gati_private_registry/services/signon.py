"""Enterprise sign-on decisions shared by LDAP and SAML: what a directory identity
becomes here (user, role, teams, by the ``[sso]`` rules, at every sign-in), and the
protection of every sign-in (lockout after repeated failures, a per-address limit)."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..storage.db import aware as _aware
from ..domain import Origin, Role
from ..errors import Forbidden, RateLimited
from ..settings import Settings
from ..storage.db import Database
from ..storage.models import AuditEvent, Team, TeamMember, User
from . import audit
from .directory import Directory, Identity

log = logging.getLogger(__name__)

#: the actor name on events the sign-on rules cause
SSO_ACTOR = "sso"


def _now() -> datetime:
    return datetime.now(timezone.utc)


class SignOnService:
    """Turns directory identities into users and guards sign-ins."""

    def __init__(self, settings: Settings, db: Database, directory: Directory | None,
                 credentials_changed: Callable[[], object]) -> None:
        self.settings = settings
        self.db = db
        self.directory = directory
        self._credentials_changed = credentials_changed

    # -- guarding sign-in --------------------------------------------------------------

    def guard(self, username: str, ip: str) -> None:
        """Refuse a sign-in attempt for a locked name or a noisy address, before any
        password is looked at. Raises :class:`RateLimited`.

        Counted from the audit log's ``login.failure`` events, so every worker and
        every replica sees the same counts."""
        sso = self.settings.sso
        now = _now()
        with self.db.read() as s:
            if sso.lockout_failures > 0 and username:
                window = now - timedelta(minutes=sso.lockout_minutes)
                last_ok = s.scalar(select(func.max(AuditEvent.at)).where(
                    AuditEvent.actor == username[:214], AuditEvent.action == "login.success"))
                since = max(window, _aware(last_ok)) if last_ok is not None else window
                failures = s.scalar(select(func.count()).select_from(AuditEvent).where(
                    AuditEvent.actor == username[:214], AuditEvent.action == "login.failure",
                    AuditEvent.at > since)) or 0
                if failures >= sso.lockout_failures:
                    raise RateLimited(
                        f"too many failed sign-ins for {username}: locked for up to "
                        f"{sso.lockout_minutes} minutes", retry_after=sso.lockout_minutes * 60)
            if sso.max_failures_per_ip > 0 and ip:
                recent = s.scalar(select(func.count()).select_from(AuditEvent).where(
                    AuditEvent.ip == ip[:64], AuditEvent.action == "login.failure",
                    AuditEvent.at > now - timedelta(minutes=1))) or 0
                if recent >= sso.max_failures_per_ip:
                    raise RateLimited("too many failed sign-ins from your address: "
                                      "wait a minute", retry_after=60)

    def failed(self, username: str, origin: Origin | None, reason: str) -> None:
        """Record a failed sign-in (it counts towards the lockout)."""
        log.info("sign-in failed for %r from %s: %s", username,
                 origin.ip if origin else "?", reason)
        with self.db.write() as s:
            audit.record(s, username[:214], "login.failure", username, origin, reason=reason)

    # -- directory identities ----------------------------------------------------------

    def allowed(self, identity: Identity) -> bool:
        wanted = {g.lower() for g in self.settings.sso.allowed_groups}
        return not wanted or bool(wanted & {g.lower() for g in identity.groups})

    def _grants(self, identity: Identity) -> tuple[Role, set[str]]:
        """The role and the teams the rules give ``identity``."""
        groups = {g.lower() for g in identity.groups}
        role = Role(self.settings.sso.default_role)
        best: Role | None = None
        teams: set[str] = set()
        for rule in self.settings.sso.rules:
            if rule.group.lower() not in groups:
                continue
            if rule.team:
                teams.add(rule.team)
            if rule.role and (best is None or Role(rule.role).rank > best.rank):
                best = Role(rule.role)
        return best or role, teams

    def provision(self, identity: Identity, origin: Origin | None = None) -> User:
        """Create or update the user ``identity`` stands for and apply the rules: its
        role, and its membership of every team a rule names (added or removed). The
        directory just vouched for the person, so any earlier "no longer allowed"
        (see :mod:`.directory_sync`) is lifted.

        Raises :class:`Forbidden` when the name belongs to a local account (a directory
        cannot take over a break-glass admin) or the person is in no allowed group."""
        if not self.allowed(identity):
            self.failed(identity.username, origin, "not in an allowed group")
            raise Forbidden(f"{identity.username} is not in a group allowed to use this "
                            f"registry")
        with self.db.write() as s:
            user = s.scalar(select(User).where(User.username == identity.username))
            now = _now()
            if user is None:
                role, _teams = self._grants(identity)
                user = User(username=identity.username, email=identity.email[:320],
                            display_name=identity.display_name[:200], role=role.value,
                            password_hash=None, source=identity.source, created_at=now,
                            updated_at=now)
                s.add(user)
                s.flush()
                audit.record(s, SSO_ACTOR, "user.create", user.username, origin,
                             role=role.value, source=identity.source)
            elif user.source == "local":
                raise Forbidden(f"{identity.username} is a local account here; sign in with "
                                f"its own password")
            restored = user.directory_lost
            if restored:
                user.directory_lost = False
                audit.record(s, SSO_ACTOR, "user.directory.restored", user.username, origin,
                             via="sign-in", source=identity.source)
            user.directory_checked_at = now
            lost_power = self.apply(s, user, identity, origin)
        if lost_power or restored:
            # cached token principals everywhere drop the old role, team or refusal now
            self._credentials_changed()
        return user

    def apply(self, s: Session, user: User, identity: Identity, origin: Origin | None) -> bool:
        """Bring ``user`` (a directory user, in the caller's transaction) in line with
        ``identity``: role, e-mail, display name, and the rule-managed teams. Returns
        whether the user lost power (a lower role, or a team left); the caller then
        drops cached credentials after its commit."""
        role, teams = self._grants(identity)
        managed = {r.team for r in self.settings.sso.rules if r.team}
        lost_power = False
        if user.role != role.value:
            audit.record(s, SSO_ACTOR, "user.role.change", user.username, origin,
                         old=user.role, new=role.value, source=identity.source)
            lost_power = Role(user.role).rank > role.rank
            user.role = role.value
        user.email = identity.email[:320] or user.email
        user.display_name = identity.display_name[:200] or user.display_name
        user.source = identity.source
        user.updated_at = _now()
        return self._sync_teams(s, user, teams, managed, origin) or lost_power

    def credentials_changed(self) -> None:
        """Tell every process to drop its cached credentials (after a commit that took
        power away)."""
        self._credentials_changed()

    def _sync_teams(self, s: Session, user: User, teams: set[str], managed: set[str],
                    origin: Origin | None) -> bool:
        """Membership of the rule-managed teams follows the directory. Returns whether
        the user left a team."""
        if not managed:
            return False
        rows = {t.name: t for t in s.scalars(select(Team).where(Team.name.in_(managed)))}
        for name in sorted(teams - rows.keys()):
            # a rule names a team nobody created yet: the rule is the admin's intent
            team = Team(name=name, description="created by a sign-on rule", created_at=_now())
            s.add(team)
            s.flush()
            rows[name] = team
            audit.record(s, SSO_ACTOR, "team.create", name, origin)
        current = set(s.scalars(select(Team.name).join(TeamMember, TeamMember.team_id == Team.id)
                                .where(TeamMember.user_id == user.id,
                                       Team.name.in_(managed))).all())
        for name in sorted(teams - current):
            s.add(TeamMember(team_id=rows[name].id, user_id=user.id))
            audit.record(s, SSO_ACTOR, "team.member.add", name, origin, user=user.username)
        gone = current - teams
        for name in sorted(gone):
            member = s.get(TeamMember, (rows[name].id, user.id))
            if member is not None:
                s.delete(member)
            audit.record(s, SSO_ACTOR, "team.member.remove", name, origin, user=user.username)
        return bool(gone)


