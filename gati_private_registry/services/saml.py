"""SAML 2.0 single sign-on: the registry as a service provider, on pysaml2 (the
``saml`` extra; signatures are made and checked by the xmlsec1 binary).

Signed assertions are required, audience and validity times are checked by pysaml2,
and every assertion id is remembered until it expires so a replayed response is
refused even where unsolicited (IdP-initiated) responses are allowed."""
from __future__ import annotations

import base64
import binascii
import calendar
import logging
import re
import shutil
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from ..storage.db import aware as _aware
from ..errors import Unauthenticated, Unavailable
from ..settings import SamlSettings
from ..storage.db import Database
from ..storage.models import SamlAssertion
from .directory import DIRECTORY_USERNAME, Identity

log = logging.getLogger(__name__)

#: how long a browser has to come back from the IdP
REQUEST_TTL = timedelta(minutes=15)
#: outstanding AuthnRequest ids share the table with used assertion ids, under this prefix
_REQUEST = "request:"
_IN_RESPONSE_TO = re.compile(r'<(?:\w+:)?Response\b[^>]*\bInResponseTo="([^"]{1,200})"')


@dataclass(frozen=True)
class SamlLogin:
    """A verified sign-in: who, where to go next, and what single logout needs."""

    identity: Identity
    relay_state: str
    name_id: str
    session_index: str


def _values(ava: dict[str, list[Any]], name: str) -> list[str]:
    if not name:
        return []
    for key, values in ava.items():
        if key.lower() == name.lower():
            return [str(v) for v in values]
    return []


class SamlServiceProvider:
    """One pysaml2 client per external base URL (the ACS URL is part of the config)."""

    def __init__(self, settings: SamlSettings, db: Database) -> None:
        try:
            import saml2  # noqa: F401
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise Unavailable("SAML sign-on is configured but pysaml2 is not installed: "
                              "pip install 'gati-private-registry[saml]'") from None
        self.settings = settings
        self.db = db
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def entity_id(self, base: str) -> str:
        return self.settings.entity_id or f"{base}/saml/metadata"

    def _config(self, base: str) -> Any:
        from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
        from saml2.config import SPConfig
        from saml2.saml import NAMEID_FORMAT_PERSISTENT

        s = self.settings
        metadata: dict[str, Any] = {}
        if s.idp_metadata_file:
            metadata["local"] = [s.idp_metadata_file]
        if s.idp_metadata_url:
            metadata["remote"] = [{"url": s.idp_metadata_url}]
        signing = bool(s.key_file and s.cert_file)
        conf: dict[str, Any] = {
            "entityid": self.entity_id(base),
            "service": {"sp": {
                "endpoints": {
                    "assertion_consumer_service": [(f"{base}/saml/acs", BINDING_HTTP_POST)],
                    "single_logout_service": [(f"{base}/saml/slo", BINDING_HTTP_REDIRECT)],
                },
                # the assertion must carry the IdP's signature, whatever the response does
                "want_assertions_signed": True,
                "want_response_signed": False,
                "allow_unsolicited": s.allow_idp_initiated,
                "authn_requests_signed": signing,
                "logout_requests_signed": signing,
                "name_id_format": NAMEID_FORMAT_PERSISTENT,
                "signing_algorithm": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                "digest_algorithm": "http://www.w3.org/2001/04/xmlenc#sha256",
            }},
            "metadata": metadata,
            "accepted_time_diff": s.clock_skew,
            # group attributes are named differently by every IdP ("groups", "memberOf",
            # "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"...)
            "allow_unknown_attributes": True,
            "xmlsec_binary": s.xmlsec_binary or shutil.which("xmlsec1") or "/usr/bin/xmlsec1",
        }
        if signing:
            conf["key_file"] = s.key_file
            conf["cert_file"] = s.cert_file
            conf["encryption_keypairs"] = [{"key_file": s.key_file, "cert_file": s.cert_file}]
        config = SPConfig()
        config.load(conf)
        return config

    def _client(self, base: str) -> Any:
        with self._lock:
            client = self._clients.get(base)
            if client is None:
                from saml2.client import Saml2Client

                try:
                    client = Saml2Client(config=self._config(base))
                except Exception as exc:  # metadata unreadable or unreachable
                    log.error("SAML configuration failed: %r", exc)
                    raise Unavailable("SAML sign-on is misconfigured or the identity "
                                      "provider's metadata cannot be read") from exc
                self._clients[base] = client
            return client

    def _idp(self, client: Any) -> str:
        idps = client.metadata.with_descriptor("idpsso")
        if len(idps) != 1:
            raise Unavailable(f"the SAML metadata must describe one identity provider, "
                              f"found {len(idps)}")
        return str(next(iter(idps)))

    def metadata(self, base: str) -> str:
        """This SP's metadata XML, for the IdP's administrators."""
        from saml2.metadata import create_metadata_string

        data = create_metadata_string(None, config=self._config(base), valid=24 * 7)
        return data.decode() if isinstance(data, bytes) else str(data)

    def login_redirect(self, base: str, relay_state: str) -> tuple[str, str]:
        """Start SP-initiated login: (request id to keep, URL to send the browser to)."""
        from saml2 import BINDING_HTTP_REDIRECT
        from saml2.saml import NAMEID_FORMAT_PERSISTENT

        client = self._client(base)
        reqid, info = client.prepare_for_authenticate(
            entityid=self._idp(client), relay_state=relay_state,
            binding=BINDING_HTTP_REDIRECT, nameid_format=NAMEID_FORMAT_PERSISTENT)
        # Kept in the database, not the session cookie: the IdP's POST back is
        # cross-site, and a SameSite=Lax cookie does not come with it.
        with self.db.write() as s:
            s.add(SamlAssertion(id=(_REQUEST + str(reqid))[:255],
                                expires_at=datetime.now(timezone.utc) + REQUEST_TTL))
        return str(reqid), str(dict(info["headers"])["Location"])

    def _outstanding(self, saml_response: str) -> dict[str, str]:
        """{request id: ""} when the response answers a live request of ours."""
        try:
            xml = base64.b64decode(saml_response, validate=False)[:200_000].decode("utf-8", "replace")
        except (ValueError, binascii.Error):
            return {}
        m = _IN_RESPONSE_TO.search(xml)
        if m is None:
            return {}
        with self.db.read() as s:
            row = s.get(SamlAssertion, (_REQUEST + m.group(1))[:255])
        if row is None or _aware(row.expires_at) < datetime.now(timezone.utc):
            return {}
        return {m.group(1): ""}

    def consume(self, base: str, saml_response: str) -> SamlLogin:
        """Verify a POSTed response: signature, audience, times, a live request of
        ours (or an allowed unsolicited one), never seen before. Raises
        :class:`Unauthenticated`."""
        from saml2 import BINDING_HTTP_POST

        client = self._client(base)
        outstanding = self._outstanding(saml_response)
        try:
            resp = client.parse_authn_request_response(saml_response, BINDING_HTTP_POST,
                                                       outstanding=outstanding)
        except Exception as exc:  # pysaml2 raises many types: any of them is a refusal
            log.warning("SAML response refused: %r", exc)
            raise Unauthenticated(f"the SAML response was refused ({exc.__class__.__name__})") \
                from None
        if resp is None or resp.assertion is None:
            raise Unauthenticated("the SAML response was refused (no valid assertion)")
        self._remember(resp.assertion, resp.in_response_to)
        ava = resp.get_identity()
        s = self.settings
        name_id = resp.name_id
        usernames = _values(ava, s.username_attribute) or [getattr(name_id, "text", "") or ""]
        username = usernames[0]
        if not DIRECTORY_USERNAME.match(username):
            raise Unauthenticated("the SAML assertion names no usable user name")
        from saml2.ident import code

        identity = Identity(username=username, source="saml",
                            email=(_values(ava, s.email_attribute) or [""])[0],
                            display_name=(_values(ava, s.display_name_attribute) or [""])[0],
                            groups=tuple(sorted(set(_values(ava, s.groups_attribute)))))
        index = resp.session_index() if hasattr(resp, "session_index") else None
        return SamlLogin(identity, "", code(name_id) if name_id is not None else "",
                         str(index or ""))

    def _remember(self, assertion: Any, in_response_to: str | None) -> None:
        """Record the assertion id (a second use is a replay) and use up the request it
        answers. Raises :class:`Unauthenticated`."""
        from saml2.time_util import str_to_time

        until = None
        cond = getattr(assertion, "conditions", None)
        if cond is not None and cond.not_on_or_after:
            until = datetime.fromtimestamp(calendar.timegm(str_to_time(cond.not_on_or_after)),
                                           timezone.utc)
        now = datetime.now(timezone.utc)
        until = (until or now + timedelta(hours=1)) + timedelta(seconds=self.settings.clock_skew)
        try:
            with self.db.write() as s:
                s.execute(delete(SamlAssertion).where(SamlAssertion.expires_at < now))
                if in_response_to:
                    s.execute(delete(SamlAssertion).where(
                        SamlAssertion.id == (_REQUEST + in_response_to)[:255]))
                s.add(SamlAssertion(id=str(assertion.id)[:255], expires_at=until))
        except IntegrityError:
            raise Unauthenticated("the SAML assertion was already used (replay)") from None

    def logout_redirect(self, base: str, name_id: str, session_index: str) -> str | None:
        """Where to send the browser for single logout, or None when the IdP has no
        logout service."""
        from saml2 import BINDING_HTTP_REDIRECT
        from saml2.ident import decode

        client = self._client(base)
        idp = self._idp(client)
        try:
            dest = client.metadata.single_logout_service(idp, BINDING_HTTP_REDIRECT, "idpsso")
        except Exception:  # noqa: BLE001 - no SLO in the metadata
            return None
        if not dest:
            return None
        location = dest[0]["location"]
        reqid, req = client.create_logout_request(
            location, idp, name_id=decode(name_id),
            session_indexes=[session_index] if session_index else None,
            expire=None, sign=False)
        info = client.apply_binding(BINDING_HTTP_REDIRECT, str(req), location,
                                    relay_state="/login", sigalg=None)
        return str(dict(info["headers"])["Location"])

    def logout_service(self, base: str, saml_request: str | None, saml_response: str | None,
                       relay_state: str) -> str | None:
        """``/saml/slo``: a LogoutRequest from the IdP is answered with a LogoutResponse
        (returns where to send it); a LogoutResponse just ends here (None)."""
        from saml2 import BINDING_HTTP_REDIRECT

        client = self._client(base)
        if saml_response:
            try:
                client.parse_logout_request_response(saml_response, BINDING_HTTP_REDIRECT)
            except Exception as exc:  # noqa: BLE001 - the local session is gone anyway
                log.info("SAML logout response not understood: %r", exc)
            return None
        if not saml_request:
            return None
        try:
            req = client.parse_logout_request(saml_request, BINDING_HTTP_REDIRECT)
            resp = client.create_logout_response(req.message, [BINDING_HTTP_REDIRECT])
            rinfo = client.response_args(req.message, [BINDING_HTTP_REDIRECT])
            info = client.apply_binding(rinfo["binding"], str(resp), rinfo["destination"],
                                        relay_state=relay_state, response=True)
        except Exception as exc:  # pysaml2 raises many types: any of them is a refusal
            log.warning("SAML logout request refused: %r", exc)
            raise Unauthenticated(f"the SAML logout request was refused "
                                  f"({exc.__class__.__name__})") from None
        return str(dict(info["headers"])["Location"])
