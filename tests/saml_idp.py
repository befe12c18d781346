"""A real pysaml2 identity provider for tests, in the test process: key pairs made with
``cryptography``, metadata exchanged with the registry's SP, signed responses built
with ``saml2.server.Server`` (xmlsec1 signs), and a tiny WSGI front end for browser
tests (a sign-in form that posts the signed response to the registry)."""
from __future__ import annotations

import base64
import datetime
import html
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, urlparse
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

XMLSEC = "/usr/bin/xmlsec1"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
URI_FORM = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"


def make_cert(directory: str, name: str) -> tuple[str, str]:
    """A self-signed RSA-2048 key pair as PEM files: (key path, cert path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    kp, cp = os.path.join(directory, name + ".key"), os.path.join(directory, name + ".crt")
    with open(kp, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.TraditionalOpenSSL,
                                   serialization.NoEncryption()))
    with open(cp, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    return kp, cp


def _idp_config(entity_id: str, sso_url: str, slo_url: str, key: str, crt: str,
                sp_metadata: list[str] | None, lifetime_minutes: int) -> Any:
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
    from saml2.config import IdPConfig
    from saml2.saml import NAMEID_FORMAT_PERSISTENT

    conf = IdPConfig()
    conf.load({
        "entityid": entity_id,
        "service": {"idp": {
            "endpoints": {
                "single_sign_on_service": [(sso_url, BINDING_HTTP_REDIRECT)],
                "single_logout_service": [(slo_url, BINDING_HTTP_REDIRECT)],
            },
            "name_id_format": [NAMEID_FORMAT_PERSISTENT],
            # pysaml2 reads these per service: at the top level they would be ignored
            "signing_algorithm": RSA_SHA256,
            "digest_algorithm": SHA256,
            "policy": {"default": {"lifetime": {"minutes": lifetime_minutes},
                                   "attribute_restrictions": None,
                                   "name_form": URI_FORM}},
        }},
        "key_file": key, "cert_file": crt, "xmlsec_binary": XMLSEC,
        "metadata": {"inline": sp_metadata} if sp_metadata else {},
    })
    _ = BINDING_HTTP_POST
    return conf


@dataclass
class FakeIdP:
    """One IdP entity (key pair, metadata) that can answer the registry's SP."""

    base: str = "https://idp.test"
    directory: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="gati-idp-"))
    key: str = ""
    cert: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            self.key, self.cert = make_cert(self.directory, "idp")

    @property
    def entity_id(self) -> str:
        return self.base + "/metadata"

    def metadata(self) -> str:
        from saml2.metadata import entity_descriptor

        conf = _idp_config(self.entity_id, self.base + "/sso", self.base + "/slo",
                           self.key, self.cert, None, 15)
        return str(entity_descriptor(conf))

    def metadata_file(self) -> str:
        path = os.path.join(self.directory, "idp-metadata.xml")
        with open(path, "w") as fh:
            fh.write(self.metadata())
        return path

    def server(self, sp_metadata: str | list[str], lifetime_minutes: int = 15,
               key: str | None = None, cert: str | None = None) -> Any:
        """The pysaml2 IdP, knowing the SP(s); ``key``/``cert`` to sign with another key."""
        from saml2.server import Server

        mds = [sp_metadata] if isinstance(sp_metadata, str) else sp_metadata
        return Server(config=_idp_config(self.entity_id, self.base + "/sso",
                                         self.base + "/slo", key or self.key,
                                         cert or self.cert, mds, lifetime_minutes))


DEFAULT_IDENTITY = {"uid": ["alice"], "mail": ["alice@example.org"],
                    "displayName": ["Alice Example"], "groups": ["payments-devs"]}


def authn_response(idp: Any, saml_request: str | None, identity: dict[str, list[str]],
                   *, sign_assertion: bool = True, sign_response: bool = True,
                   relay_state: str = "", sp_entity_id: str | None = None,
                   acs_url: str | None = None, audience: str | None = None) -> tuple[str, str]:
    """The SAMLResponse (base64) and RelayState the IdP posts back: to the request
    ``saml_request`` (HTTP-Redirect), or unsolicited (IdP-initiated) when None."""
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
    from saml2.authn_context import PASSWORD
    from saml2.samlp import NameIDPolicy
    from saml2.saml import NAMEID_FORMAT_PERSISTENT

    if saml_request is not None:
        req = idp.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT)
        args = idp.response_args(req.message)
    else:
        assert sp_entity_id and acs_url
        args = {"destination": acs_url, "in_response_to": None, "sp_entity_id": sp_entity_id,
                "name_id_policy": NameIDPolicy(format=NAMEID_FORMAT_PERSISTENT),
                "binding": BINDING_HTTP_POST}
    if audience is not None:
        args["sp_entity_id"] = audience
    resp = idp.create_authn_response(
        identity, userid=identity.get("uid", ["someone"])[0],
        authn={"class_ref": PASSWORD, "authn_auth": idp.config.entityid},
        sign_response=sign_response, sign_assertion=sign_assertion, **args)
    form = idp.apply_binding(BINDING_HTTP_POST, resp, args["destination"],
                             relay_state=relay_state, response=True)["data"]
    value = re.search(r'name="SAMLResponse" value="([^"]+)"', form)
    assert value is not None, form
    return html.unescape(value.group(1)), relay_state


def request_from_location(location: str) -> tuple[str, str]:
    """(SAMLRequest, RelayState) from the SP's redirect to the IdP."""
    q = parse_qs(urlparse(location).query)
    return q["SAMLRequest"][0], q.get("RelayState", [""])[0]


def decode(saml_response: str) -> str:
    return base64.b64decode(saml_response).decode()


# -- an IdP over HTTP, for browser tests ---------------------------------------------------


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class HttpIdP:
    """``/sso`` shows a sign-in form for the SP's AuthnRequest; posting it with a known
    user's password answers with pysaml2's auto-submitting form to the SP's ACS."""

    def __init__(self, idp_entity: FakeIdP, users: dict[str, tuple[str, dict[str, list[str]]]]):
        self.entity = idp_entity
        self.users = users
        self.server: Any = None
        self._httpd: WSGIServer | None = None

    def start(self) -> "HttpIdP":
        self._httpd = make_server("127.0.0.1", 0, self.app, handler_class=_Quiet)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_port}"

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def app(self, environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/sso" and environ["REQUEST_METHOD"] == "GET":
            q = parse_qs(environ.get("QUERY_STRING", ""))
            body = (
                "<!doctype html><title>Test IdP</title><h1>Test IdP sign-in</h1>"
                "<form method=post action=/sso id=idp-form>"
                f"<input type=hidden name=SAMLRequest value=\"{html.escape(q['SAMLRequest'][0])}\">"
                f"<input type=hidden name=RelayState value=\"{html.escape(q.get('RelayState', [''])[0])}\">"
                "<label>User <input name=username></label>"
                "<label>Password <input name=password type=password></label>"
                "<button type=submit id=idp-submit>Sign in</button></form>")
            start("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [body.encode()]
        if path == "/sso" and environ["REQUEST_METHOD"] == "POST":
            size = int(environ.get("CONTENT_LENGTH") or 0)
            form = {k: v[0] for k, v in parse_qs(environ["wsgi.input"].read(size).decode()).items()}
            user = self.users.get(form.get("username", ""))
            if user is None or user[0] != form.get("password"):
                start("401 Unauthorized", [("Content-Type", "text/html")])
                return [b"<p id=idp-error>wrong password</p>"]
            from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
            from saml2.authn_context import PASSWORD

            req = self.server.parse_authn_request(form["SAMLRequest"], BINDING_HTTP_REDIRECT)
            args = self.server.response_args(req.message)
            resp = self.server.create_authn_response(
                user[1], userid=form["username"],
                authn={"class_ref": PASSWORD, "authn_auth": self.entity.entity_id},
                sign_response=True, sign_assertion=True, **args)
            page = self.server.apply_binding(BINDING_HTTP_POST, resp, args["destination"],
                                             relay_state=form.get("RelayState", ""),
                                             response=True)["data"]
            start("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [page.encode()]
        start("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
