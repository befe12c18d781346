"""Directories people sign in with: the :class:`Directory` contract and its LDAP
implementation on python-ldap (the ``ldap`` extra)."""
from __future__ import annotations

import contextlib
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Protocol

from ..errors import Unavailable
from ..settings import LdapSettings

log = logging.getLogger(__name__)

#: the user names we ever send to a directory. Anything else (``*``, parentheses,
#: backslashes, NUL, commas) cannot be a registry user name, so it never reaches a
#: filter; the filter is escaped as well, in case a site's names are wider than ours.
DIRECTORY_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,213}$")
#: how deep nested groups are followed (a cycle in the directory stops here)
MAX_GROUP_DEPTH = 10


@dataclass(frozen=True)
class Identity:
    """Who a directory (LDAP, SAML) says someone is."""

    username: str
    source: str
    email: str = ""
    display_name: str = ""
    #: every group the person is in, directly or through nesting: names and DNs
    groups: tuple[str, ...] = ()


class Directory(Protocol):
    """Something that checks a name and password and tells who that is."""

    def authenticate(self, username: str, password: str) -> Identity | None:
        """The identity when the password is right; None for an unknown user or a
        wrong password. Raises :class:`Unavailable` when the directory cannot answer
        (never a sign-in on an outage)."""

    def lookup(self, username: str) -> Identity | None:
        """Who ``username`` is now, asked with the registry's own (service) credentials:
        the identity with its current groups, or None when the directory no longer has
        such a user (or its user filter no longer matches them, which is how a site
        says "disabled"). Raises :class:`Unavailable` when the directory cannot answer."""

    def close(self) -> None:
        """Drop pooled connections."""


def _text(values: Any) -> str:
    if not values:
        return ""
    value = values[0]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class LdapDirectory:
    """Service-account bind, search for the user, bind as the user, read groups
    (``memberOf`` and a group search, nested groups followed). The service-account
    connection is reused across sign-ins; the user's bind uses its own connection, so
    the pooled one never carries a user's identity."""

    def __init__(self, settings: LdapSettings) -> None:
        try:
            import ldap
            import ldap.dn
            import ldap.filter
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise Unavailable("LDAP sign-in is configured but python-ldap is not installed: "
                              "pip install 'gati-private-registry[ldap]'") from None
        self._ldap: Any = ldap
        self.settings = settings
        self._pool: list[Any] = []
        self._lock = threading.Lock()

    # -- connections -------------------------------------------------------------------

    def _connect(self) -> Any:
        ldap, s = self._ldap, self.settings
        conn = ldap.initialize(s.url)
        conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
        conn.set_option(ldap.OPT_REFERRALS, 0)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, s.timeout)
        conn.set_option(ldap.OPT_TIMEOUT, s.timeout)
        if s.url.startswith("ldaps://") or s.start_tls:
            conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
            if s.ca_file:
                conn.set_option(ldap.OPT_X_TLS_CACERTFILE, s.ca_file)
            # applies the TLS options above to this connection (must come last)
            conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        if s.start_tls and s.url.startswith("ldap://"):
            conn.start_tls_s()
        return conn

    def _outage(self, exc: Exception) -> Unavailable:
        log.warning("LDAP directory %s unavailable: %r", self.settings.url, exc)
        return Unavailable("the sign-in directory (LDAP) cannot be reached; try again later")

    @contextlib.contextmanager
    def _service(self) -> Iterator[Any]:
        """A connection bound as the service account, from the pool or new. A broken
        one is dropped, never handed back."""
        ldap = self._ldap
        with self._lock:
            conn = self._pool.pop() if self._pool else None
        try:
            if conn is None:
                conn = self._connect()
                conn.simple_bind_s(self.settings.bind_dn, self.settings.bind_password)
            yield conn
        except ldap.INVALID_CREDENTIALS as exc:
            # the service account itself was refused: a configuration problem
            log.error("LDAP service account %r was refused", self.settings.bind_dn)
            raise Unavailable("the sign-in directory refused the registry's service account") from exc
        except Exception:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.unbind_s()
            raise
        with self._lock:
            self._pool.append(conn)

    def _search(self, base: str, flt: str, attrs: list[str]) -> list[tuple[str, dict[str, Any]]]:
        ldap = self._ldap
        last: Exception | None = None
        # one retry: a pooled connection the server closed while idle is not an outage
        for _ in range(2):
            try:
                with self._service() as conn:
                    found = conn.search_st(base, ldap.SCOPE_SUBTREE, flt, attrs,
                                           timeout=self.settings.timeout)
                return [(dn, entry) for dn, entry in found if dn]  # skip referrals
            except ldap.NO_SUCH_OBJECT:
                return []
            except (ldap.SERVER_DOWN, ldap.CONNECT_ERROR, ldap.TIMEOUT, ldap.UNAVAILABLE,
                    ldap.BUSY) as exc:
                last = exc
        assert last is not None
        raise self._outage(last)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, []
        for conn in pool:
            with contextlib.suppress(Exception):
                conn.unbind_s()

    # -- the contract ------------------------------------------------------------------

    def authenticate(self, username: str, password: str) -> Identity | None:
        """See :meth:`Directory.authenticate`."""
        # An empty password is an "unauthenticated bind", which LDAP servers accept
        # as anonymous: it must never count as a right password.
        if not password or not DIRECTORY_USERNAME.match(username):
            return None
        found = self._find(username)
        if found is None:
            return None
        dn, entry = found
        if not self._user_bind(dn, password):
            return None
        return self._identity(username, dn, entry)

    def lookup(self, username: str) -> Identity | None:
        """See :meth:`Directory.lookup`."""
        if not DIRECTORY_USERNAME.match(username):
            return None
        found = self._find(username)
        return None if found is None else self._identity(username, *found)

    def _find(self, username: str) -> tuple[str, dict[str, Any]] | None:
        """The one entry the user filter finds for ``username`` (None for none or many)."""
        ldap, s = self._ldap, self.settings
        flt = s.user_filter.replace("{username}", ldap.filter.escape_filter_chars(username))
        attrs = [s.email_attribute, s.display_name_attribute, "memberOf"]
        users = self._search(s.user_base, flt, attrs)
        if len(users) != 1:
            if users:
                log.warning("LDAP filter %s matched %d entries: refusing", flt, len(users))
            return None
        return users[0]

    def _identity(self, username: str, dn: str, entry: dict[str, Any]) -> Identity:
        s = self.settings
        groups = self._groups(dn, entry)
        return Identity(username=username, source="ldap", email=_text(entry.get(s.email_attribute)),
                        display_name=_text(entry.get(s.display_name_attribute)),
                        groups=tuple(sorted(groups)))

    def _user_bind(self, dn: str, password: str) -> bool:
        ldap = self._ldap
        try:
            conn = self._connect()
        except (ldap.SERVER_DOWN, ldap.CONNECT_ERROR, ldap.TIMEOUT) as exc:
            raise self._outage(exc) from exc
        try:
            conn.simple_bind_s(dn, password)
            return True
        except ldap.INVALID_CREDENTIALS:
            return False
        except (ldap.SERVER_DOWN, ldap.CONNECT_ERROR, ldap.TIMEOUT, ldap.UNAVAILABLE,
                ldap.BUSY) as exc:
            raise self._outage(exc) from exc
        finally:
            with contextlib.suppress(Exception):
                conn.unbind_s()

    def _name_of(self, dn: str) -> str:
        try:
            return str(self._ldap.dn.str2dn(dn)[0][0][1])
        except (self._ldap.DECODING_ERROR, IndexError):
            return ""

    def _groups(self, user_dn: str, entry: dict[str, Any]) -> set[str]:
        """Names and DNs of the user's groups: ``memberOf`` plus the group search,
        then the groups holding those groups, and so on (nested groups)."""
        ldap, s = self._ldap, self.settings
        dns = {v.decode() if isinstance(v, bytes) else str(v) for v in entry.get("memberOf", [])}
        names: dict[str, str] = {}
        if s.group_base:
            frontier = {user_dn} | dns
            seen: set[str] = set()
            for _ in range(MAX_GROUP_DEPTH if s.nested_groups else 1):
                todo = frontier - seen
                if not todo:
                    break
                seen |= todo
                frontier = set()
                for member in todo:
                    flt = s.group_filter.replace("{dn}", ldap.filter.escape_filter_chars(member))
                    for gdn, gentry in self._search(s.group_base, flt, [s.group_name_attribute]):
                        names[gdn.lower()] = _text(gentry.get(s.group_name_attribute))
                        if gdn not in dns:
                            dns.add(gdn)
                        frontier.add(gdn)
        out: set[str] = set()
        for dn in dns:
            out.add(dn)
            out.add(names.get(dn.lower()) or self._name_of(dn))
        out.discard("")
        return out
