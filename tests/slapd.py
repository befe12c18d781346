"""A throwaway OpenLDAP server (the real ``slapd``) for tests: temporary config, back_mdb
and the memberof overlay, on a free port, loaded online so ``memberOf`` is filled.

The directory: people alice, bob, carol, dave, erin (password ``<name>-pw``) under
``ou=people``; groups under ``ou=groups``:

- ``registry-admins``: alice
- ``payments-devs``: alice, bob
- ``search-devs``: carol, erin
- ``engineering``: the *groups* payments-devs and search-devs (nested), nobody directly
- ``sales``: dave (not an engineer)
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
LDAPADD = shutil.which("ldapadd") or "/usr/bin/ldapadd"
SCHEMA_DIR = "/etc/ldap/schema"
MODULE_DIR = "/usr/lib/ldap"

BASE_DN = "dc=example,dc=org"
ROOT_DN = "cn=admin," + BASE_DN
ROOT_PW = "adminpw"
SERVICE_DN = "cn=registry,ou=services," + BASE_DN
SERVICE_PW = "service-pw"
PEOPLE = "ou=people," + BASE_DN
GROUPS = "ou=groups," + BASE_DN

SLAPD_CONF = """\
{tls}
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
include {schema}/nis.schema

modulepath {modules}
moduleload back_mdb
moduleload memberof

pidfile  {tmp}/slapd.pid
argsfile {tmp}/slapd.args

database mdb
maxsize 67108864
suffix "{base}"
rootdn "{rootdn}"
rootpw {rootpw}
directory {tmp}/data
index objectClass eq
index uid,cn,member eq

access to attrs=userPassword
    by anonymous auth
    by self write
    by * none
access to *
    by dn.exact="{service}" read
    by self read
    by * none

overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE
"""


def _person(uid: str, cn: str) -> str:
    return (f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {cn}\n"
            f"sn: {cn.split()[-1]}\nmail: {uid}@example.org\nuserPassword: {uid}-pw\n")


def _group(cn: str, members: list[str]) -> str:
    return f"dn: cn={cn},{GROUPS}\nobjectClass: groupOfNames\ncn: {cn}\n" + \
        "".join(f"member: {m}\n" for m in members)


def seed_ldif() -> str:
    people = {"alice": "Alice Admin", "bob": "Bob Payer", "carol": "Carol Searcher",
              "dave": "Dave Seller", "erin": "Erin Mover"}
    parts = [
        f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n",
        f"dn: ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: ou=groups,{BASE_DN}\nobjectClass: organizationalUnit\nou: groups\n",
        f"dn: ou=services,{BASE_DN}\nobjectClass: organizationalUnit\nou: services\n",
        f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: registry\nuserPassword: {SERVICE_PW}\n",
    ]
    parts += [_person(uid, cn) for uid, cn in people.items()]
    u = {uid: f"uid={uid},{PEOPLE}" for uid in people}
    parts += [
        _group("registry-admins", [u["alice"]]),
        _group("payments-devs", [u["alice"], u["bob"]]),
        _group("search-devs", [u["carol"], u["erin"]]),
        _group("engineering", [f"cn=payments-devs,{GROUPS}", f"cn=search-devs,{GROUPS}"]),
        _group("sales", [u["dave"]]),
    ]
    return "\n".join(parts)


def _die_with_parent() -> None:
    # Linux: slapd gets SIGTERM if the test process dies without running teardown
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_tls_files(directory: str) -> tuple[str, str, str]:
    """A CA and a server certificate it signed for 127.0.0.1/localhost:
    (CA cert, server cert, server key) PEM paths."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (x509.CertificateBuilder().subject_name(name("gati test CA")).issuer_name(name("gati test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = tuple(os.path.join(directory, n) for n in ("ca.crt", "server.crt", "server.key"))
    with open(paths[0], "wb") as fh:
        fh.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths[1], "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths[2], "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.TraditionalOpenSSL,
                                   serialization.NoEncryption()))
    return paths  # type: ignore[return-value]


class Slapd:
    """``start()`` returns once the server answers and the seed is loaded; ``stop()``
    ends it (only the process this object started) and removes its files. With
    ``tls``, it also listens for ldaps:// (``ldaps_uri``) and offers StartTLS, with a
    certificate from a throwaway CA (``ca_file``)."""

    def __init__(self, tls: bool = False) -> None:
        self.tmp = tempfile.mkdtemp(prefix="gati-slapd-")
        self.port = free_port()
        self.uri = f"ldap://127.0.0.1:{self.port}"
        self.tls = tls
        self.ldaps_uri = ""
        self.ca_file = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self, timeout: float = 15.0) -> "Slapd":
        os.makedirs(os.path.join(self.tmp, "data"), exist_ok=True)
        conf = os.path.join(self.tmp, "slapd.conf")
        tls, urls = "", self.uri + "/"
        if self.tls:
            self.ca_file, cert, key = make_tls_files(self.tmp)
            tls = (f"TLSCACertificateFile {self.ca_file}\nTLSCertificateFile {cert}\n"
                   f"TLSCertificateKeyFile {key}\n")
            self.ldaps_uri = f"ldaps://127.0.0.1:{free_port()}"
            urls += " " + self.ldaps_uri + "/"
        with open(conf, "w") as fh:
            fh.write(SLAPD_CONF.format(schema=SCHEMA_DIR, modules=MODULE_DIR, tmp=self.tmp,
                                       base=BASE_DN, rootdn=ROOT_DN, rootpw=ROOT_PW,
                                       service=SERVICE_DN, tls=tls))
        self._log = open(os.path.join(self.tmp, "slapd.log"), "wb")
        # -d 0: stay in the foreground, so Popen holds the real PID
        self.proc = subprocess.Popen([SLAPD, "-f", conf, "-h", urls, "-d", "0"],
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"slapd exited: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("slapd did not come up")
                time.sleep(0.02)
        return self

    def load(self, ldif: str) -> None:
        """Add entries online (the memberof overlay only fills memberOf that way)."""
        subprocess.run([LDAPADD, "-x", "-H", self.uri, "-D", ROOT_DN, "-w", ROOT_PW],
                       input=ldif.encode(), check=True, capture_output=True)

    def admin(self) -> Any:
        """A python-ldap connection bound as the root DN (to change the directory)."""
        import ldap

        conn = ldap.initialize(self.uri)
        conn.simple_bind_s(ROOT_DN, ROOT_PW)
        return conn

    def set_member(self, group: str, uid: str, present: bool) -> None:
        import ldap

        conn = self.admin()
        try:
            op = ldap.MOD_ADD if present else ldap.MOD_DELETE
            conn.modify_s(f"cn={group},{GROUPS}", [(op, "member", [f"uid={uid},{PEOPLE}".encode()])])
        finally:
            conn.unbind_s()

    def registry_settings(self) -> dict[str, Any]:
        """The registry's ``[ldap]`` and ``[sso]`` settings for this directory."""
        return ldap_settings(self.uri)

    def log(self) -> str:
        try:
            with open(os.path.join(self.tmp, "slapd.log"), errors="replace") as fh:
                return fh.read()[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.tmp, ignore_errors=True)


def ldap_settings(uri: str) -> dict[str, Any]:
    """The registry's ``[ldap]`` and ``[sso]`` settings for this directory."""
    return {
        "ldap": {"enabled": True, "url": uri, "bind_dn": SERVICE_DN, "bind_password": SERVICE_PW,
                 "user_base": PEOPLE, "group_base": GROUPS, "timeout": 3.0},
        "sso": {"allowed_groups": ["engineering", "registry-admins"],
                "default_role": "reader",
                "rules": [{"group": "registry-admins", "role": "admin"},
                          {"group": "engineering", "role": "publisher"},
                          {"group": "payments-devs", "team": "payments"},
                          {"group": f"cn=search-devs,{GROUPS}", "team": "search"}]},
    }
