"""A rolling upgrade on PostgreSQL, with real ``gati-registry serve`` processes: the old
release keeps serving while the next release's migration runs.

The "next release" is a copy of this package tree with one more, expand-only migration (a
nullable column on ``versions`` that the copy's model writes, a new table, and a pause
that holds the migration's locks for a while, as a backfill would). Two servers of this
release share one database and one blob directory; reads, tarball downloads, publishes
and approvals go at them from threads while the copy's ``db upgrade`` runs (and a real
``npm install`` with it), then a server of the copy joins them, then the old ones leave.
No answer from an old server may be an error, and their ``/readyz`` stays 200."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import create_engine, text

import gati_private_registry
from gati_private_registry.storage import migrate
from gati_private_registry.testing import (ModuleSpec, ServerProcess, free_port, http_call,
                                           publish_body, server_command)

pytestmark = pytest.mark.interop

THIS_RELEASE = Path(gati_private_registry.__file__).resolve().parents[1]
NEXT_REVISION = "next_release_probe"
SEEDED = [f"@gati-modules/roll-{i}" for i in range(3)]
LIVE = "@gati-modules/roll-live"  # published to all through the upgrade

NEXT_MIGRATION = '''"""the next release (test copy): a nullable column, a table, a slow step

Revision ID: {revision}
Revises: {down}
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

revision = {revision!r}
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('release_note', sa.String(length=32), nullable=True))
    op.create_table('release_marks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('note', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_release_marks')),
    )
    # hold the ACCESS EXCLUSIVE lock on versions for a while, as a backfill would
    op.execute("SELECT pg_sleep(2)")


def downgrade() -> None:
    op.drop_table('release_marks')
    with op.batch_alter_table('versions', schema=None) as batch_op:
        batch_op.drop_column('release_note')
'''

MODEL_ANCHOR = "    deprecated: Mapped[str | None] = mapped_column(Text, nullable=True)\n"
MODEL_COLUMN = ('    release_note: Mapped[str | None] = mapped_column(String(32), nullable=True,\n'
                '                                                     default="next")\n')
MODEL_TABLE = '''

class ReleaseMark(Base):
    __tablename__ = "release_marks"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    note: Mapped[str] = mapped_column(String(64))
'''


def build_next_release(root: Path) -> Path:
    """A copy of this release's package with the next migration and its model; returns
    the directory to put on PYTHONPATH."""
    package = root / "gati_private_registry"
    shutil.copytree(THIS_RELEASE / "gati_private_registry", package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (package / "storage/migrations/versions" / f"{NEXT_REVISION}.py").write_text(
        NEXT_MIGRATION.format(revision=NEXT_REVISION, down=migrate.revisions()[-1]))
    models = package / "storage/models.py"
    source = models.read_text()
    assert source.count(MODEL_ANCHOR) == 1, "the Version model changed: update the anchor"
    models.write_text(source.replace(MODEL_ANCHOR, MODEL_ANCHOR + MODEL_COLUMN) + MODEL_TABLE)
    return root


def _path(name: str) -> str:
    return name.replace("/", "%2f")


@dataclass
class Answer:
    phase: str
    server: str
    what: str
    status: int  # 0: no HTTP answer at all
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Traffic:
    """Threads that read, download, publish and approve against whichever servers are
    in ``rotation``, and poll every old server's /readyz; every answer is recorded."""

    servers: dict[str, ServerProcess]
    tokens: dict[str, str]
    rotation: list[str]
    phase: str = "before"
    answers: list[Answer] = field(default_factory=list)
    #: (phase, server, version) of every publish that was approved
    published: list[tuple[str, str, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def record(self, server: str, what: str, status: int, detail: str = "",
               started: float | None = None) -> None:
        seconds = time.monotonic() - started if started is not None else 0.0
        with self.lock:
            self.answers.append(Answer(self.phase, server, what, status, detail, seconds))

    def call(self, server: str, what: str, method: str, path: str, token: str,
             body: Any = None) -> tuple[int, bytes]:
        started = time.monotonic()
        try:
            status, raw = http_call(method, self.servers[server].url + path, token, body)
        except OSError as exc:  # refused, reset, timed out: as bad as a 5xx
            self.record(server, what, 0, repr(exc), started)
            return 0, b""
        self.record(server, what, status, raw[:300].decode(errors="replace")
                    if status >= 400 else "", started)
        return status, raw

    def pick(self, n: int) -> str:
        with self.lock:
            return self.rotation[n % len(self.rotation)]

    def reader(self) -> None:
        n = 0
        while not self.stop.is_set():
            server, name = self.pick(n), SEEDED[n % len(SEEDED)]
            status, raw = self.call(server, "packument", "GET", f"/npm/{_path(name)}",
                                    self.tokens["read"])
            if status == 200:
                tarball = json.loads(raw)["versions"]["1.0.0"]["dist"]["tarball"]
                self.call(server, "tarball", "GET", "/npm/" + tarball.split("/npm/", 1)[1],
                          self.tokens["read"])
            n += 1
            time.sleep(0.02)

    def writer(self) -> None:
        n = 0
        while not self.stop.is_set():
            version = f"1.0.{n}"
            server = self.pick(n)
            status, _ = self.call(server, "publish", "PUT", f"/npm/{_path(LIVE)}",
                                  self.tokens["publish"], publish_body(ModuleSpec(LIVE, version)))
            if status in (200, 201):
                approver = self.pick(n + 1)
                status, _ = self.call(approver, "approve", "POST",
                                      f"/api/modules/{LIVE}/{version}/approve",
                                      self.tokens["approve"], {"reason": "rolling upgrade"})
                if status == 200:
                    with self.lock:
                        self.published.append((self.phase, server, version))
            n += 1
            time.sleep(0.1)

    def readiness(self, old: list[str]) -> None:
        while not self.stop.is_set():
            for server in old:
                started = time.monotonic()
                try:
                    status, raw = http_call("GET", self.servers[server].url + "/readyz", "")
                except OSError as exc:
                    self.record(server, "readyz", 0, repr(exc), started)
                    continue
                checks = json.loads(raw).get("checks", {})
                self.record(server, "readyz", status, checks.get("migrations", str(checks)),
                            started)
            time.sleep(0.15)

    def start(self, old: list[str]) -> None:
        self.threads = [threading.Thread(target=self.reader), threading.Thread(target=self.writer),
                        threading.Thread(target=self.readiness, args=(old,))]
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def _run(args: list[str], env: dict[str, str], cwd: Path | None = None,
         timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cluster(tmp_path: Path, pg_throwaway_url: str) -> Iterator[dict[str, Any]]:
    ports = [free_port() for _ in range(3)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATI_REGISTRY_")}
    env.update({"GATI_REGISTRY_DATABASE__URL": pg_throwaway_url,
                "GATI_REGISTRY_BLOBS__PATH": str(tmp_path / "shared-blobs"),
                "GATI_REGISTRY_SIGNING__KEYS_DIR": str(tmp_path / "shared-keys"),
                "GATI_REGISTRY_SECRET_KEY": "one-secret-for-every-replica",
                "GATI_REGISTRY_ADMIN_PASSWORD": "admin-pass-1",
                "GATI_REGISTRY_APPROVALS__DEFAULT_MODE": "manual",
                "GATI_REGISTRY_ACCESS_LOG": "false",
                # behind one load balancer: every replica builds the same tarball URLs
                "GATI_REGISTRY_PUBLIC_URL": f"http://127.0.0.1:{ports[0]}"})
    old_env = dict(env, PYTHONPATH=str(THIS_RELEASE))
    new_env = dict(env, PYTHONPATH=str(build_next_release(tmp_path / "next-release")))
    servers = {
        "old-a": ServerProcess(ports[0], tmp_path / "data-a", old_env, tmp_path / "old-a.log",
                               workers=1),
        "old-b": ServerProcess(ports[1], tmp_path / "data-b", old_env, tmp_path / "old-b.log",
                               workers=1),
        "new": ServerProcess(ports[2], tmp_path / "data-new", new_env, tmp_path / "new.log",
                             workers=1),
    }
    try:
        servers["old-a"].start()  # applies this release's migrations and makes the keys
        servers["old-b"].start()
        yield {"servers": servers, "old_env": old_env, "new_env": new_env,
               "db": pg_throwaway_url}
    finally:
        for server in servers.values():
            server.stop()


def _npm_install(tmp_path: Path, registry: ServerProcess, servers: list[ServerProcess],
                 token: str) -> subprocess.CompletedProcess[str]:
    """``npm install`` of the seeded packages from ``registry`` (the tarball URLs name the
    public URL, another of the ``servers``)."""
    home, project = tmp_path / "npm-home", tmp_path / "project"
    project.mkdir()
    home.mkdir()
    npmrc = home / ".npmrc"
    auth = "".join(f"//127.0.0.1:{s.port}/npm/:_authToken={token}\n" for s in servers)
    npmrc.write_text(f"registry={registry.url}/npm/\n{auth}"
                     "update-notifier=false\nfund=false\naudit=false\n")
    (project / "package.json").write_text(json.dumps({
        "name": "rolling-project", "version": "1.0.0", "private": True,
        "dependencies": {name: "^1.0.0" for name in SEEDED}}))
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("npm_config_")}
    env.update({"HOME": str(home), "npm_config_userconfig": str(npmrc), "NO_UPDATE_NOTIFIER": "1"})
    return _run(["npm", "install", "--cache", str(home / "cache"), "--no-audit", "--no-fund"],
                env, cwd=project)


def test_old_release_keeps_serving_while_the_next_one_migrates(cluster: dict[str, Any],
                                                               tmp_path: Path) -> None:
    if not shutil.which("npm"):
        pytest.fail("npm is not on PATH: the interop tests need the real client")
    servers: dict[str, ServerProcess] = cluster["servers"]
    old_a, old_b, new = servers["old-a"], servers["old-b"], servers["new"]
    admin = _run(server_command() + ["--data", str(old_a.data_dir), "token", "create",
                                     "--user", "admin", "--scope", "admin"], old_a.env)
    assert admin.stdout.startswith("gati_"), admin.stdout + admin.stderr
    tokens = {}
    for scope in ("publish", "approve", "read"):
        status, raw = http_call("POST", f"{old_a.url}/api/tokens", admin.stdout.strip(),
                            {"scope": scope, "name": f"rolling {scope}"})
        assert status == 201, raw
        tokens[scope] = json.loads(raw)["token"]
    for name in SEEDED:
        status, raw = http_call("PUT", f"{old_a.url}/npm/{_path(name)}", tokens["publish"],
                            publish_body(ModuleSpec(name, "1.0.0")))
        assert status in (200, 201), raw
        status, raw = http_call("POST", f"{old_b.url}/api/modules/{name}/1.0.0/approve",
                            tokens["approve"], {"reason": "seed"})
        assert status == 200, raw

    traffic = Traffic(servers, tokens, rotation=["old-a", "old-b"])
    traffic.start(old=["old-a", "old-b"])
    try:
        time.sleep(2)
        # the migration Job of the next release, with an npm install through an old server
        traffic.phase = "during"
        installs: list[subprocess.CompletedProcess[str]] = []
        npm = threading.Thread(target=lambda: installs.append(
            _npm_install(tmp_path, old_b, [old_a, old_b], tokens["read"])))
        npm.start()
        migration = _run(server_command() + ["--data", str(tmp_path / "job-data"), "db", "upgrade"],
                         cluster["new_env"])
        npm.join(timeout=180)
        assert migration.returncode == 0, migration.stdout + migration.stderr
        assert "applied 1 migration(s)" in migration.stdout, migration.stdout
        traffic.phase = "after"
        time.sleep(2)
        new.start()  # its own prepare() finds the schema current
        with traffic.lock:
            traffic.rotation.append("new")
        traffic.phase = "mixed"
        time.sleep(3)
        # the old pods leave the Service first, then stop
        with traffic.lock:
            traffic.rotation[:] = ["new"]
        traffic.phase = "new only"
        time.sleep(1)
    finally:
        traffic.finish()

    assert installs and installs[0].returncode == 0, installs and (installs[0].stdout
                                                                  + installs[0].stderr)
    for name in SEEDED:
        installed = tmp_path / "project/node_modules" / name / "package.json"
        assert json.loads(installed.read_text())["version"] == "1.0.0"

    # not one error from an old server, in any phase; every call got an answer
    old_answers = [a for a in traffic.answers if a.server.startswith("old")]
    bad = [a for a in traffic.answers if a.status not in (200, 201)]
    assert not bad, bad[:10]
    phases = {a.phase for a in old_answers}
    assert {"before", "during", "after", "mixed"} <= phases, phases
    for phase in ("before", "during", "after", "mixed"):
        kinds = {a.what for a in old_answers if a.phase == phase}
        assert {"packument", "readyz"} <= kinds, (phase, kinds)
    assert {"publish", "approve", "tarball"} <= {a.what for a in old_answers
                                                 if a.phase in ("during", "after", "mixed")}
    # /readyz of the old servers: 200 throughout, and it says the schema is ahead
    ready = [a for a in old_answers if a.what == "readyz"]
    assert all(a.status == 200 for a in ready)
    assert {a.detail for a in ready if a.phase == "before"} == {"ok"}
    assert {a.detail for a in ready if a.phase in ("after", "mixed")} == {f"ahead: {NEXT_REVISION}"}
    status, raw = http_call("GET", f"{new.url}/readyz", "")
    assert status == 200 and json.loads(raw)["checks"]["migrations"] == "ok", raw

    # the new release serves what both wrote, the same as the old servers do
    time.sleep(1.5)  # a replica's packument cache revalidates within a second
    views: dict[str, dict[str, Any]] = {}
    for label, server in servers.items():
        views[label] = {}
        for name in SEEDED + [LIVE]:
            status, raw = http_call("GET", f"{server.url}/npm/{_path(name)}", tokens["read"])
            assert status == 200, (label, raw)
            views[label][name] = json.loads(raw)
    assert views["old-a"] == views["old-b"] == views["new"], "the releases disagree on a packument"
    live_versions = set(views["new"][LIVE]["versions"])
    by_old_after = {v for p, s, v in traffic.published
                    if s.startswith("old") and p in ("after", "mixed")}
    assert by_old_after and by_old_after <= live_versions
    assert {v for _, _, v in traffic.published} == live_versions

    # the copy really is the next release: it writes the new column; the old one leaves it empty
    engine = create_engine(cluster["db"])
    try:
        with engine.connect() as conn:
            notes: dict[str, str | None] = dict(conn.execute(text(
                "SELECT v.version, v.release_note FROM versions v JOIN packages p "
                "ON p.id = v.package_id WHERE p.name = :n"), {"n": LIVE}).all())
            stamp = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()
    assert stamp == NEXT_REVISION
    assert {notes[v] for _, s, v in traffic.published if s == "new"} == {"next"}
    assert {notes[v] for _, s, v in traffic.published if s.startswith("old")} == {None}

    for label in ("old-a", "old-b"):
        servers[label].stop()
    status, raw = http_call("GET", f"{new.url}/npm/{_path(LIVE)}", tokens["read"])
    assert status == 200 and set(json.loads(raw)["versions"]) == live_versions
