"""Upstream tarballs: fetched on first request and streamed to the client while being
written to the blob store, checked against the upstream's integrity, reviewed by the
policy plugins and kept as a ``versions`` row (so the approval lifecycle, signing, the
queue and the panel apply as to local versions), then served from the blob store.

The last chunk is held back until the whole file is verified and its state decided: a
bad, truncated or refused tarball is never kept, and no client ever receives all of it
(the connection is dropped, so the client's own integrity check fails too).
"""
from __future__ import annotations

import base64
import hashlib
import io
import logging
import tarfile
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from ... import hooks
from ...domain import VersionState, tarball_filename
from ...errors import NotFound, TooLarge, Unavailable, ValidationFailed
from ...settings import Settings
from ...storage.blobs import BlobStore, BlobWriter
from ..approvals_records import tarball_reader
from ..plugins import PluginHost, RecordedVote, decide
from ..validation import TarballFile, TarballInfo, inspect_tarball
from .client import UpstreamClient, UpstreamUnavailable
from .policy import Offer, Verdict
from .store import MirroredVersion, VersionStore

log = logging.getLogger(__name__)


class TarballRefused(Exception):
    """An upstream tarball failed verification or review after streaming began; raised
    out of the response body so the server drops the connection."""


@dataclass(frozen=True)
class Expected:
    algorithm: str
    digest: bytes
    shasum: str
    url: str


def expected_for(upstream_base: str, name: str, version: str,
                 dist: dict[str, Any]) -> Expected:
    """What the upstream says the tarball is. Raises :class:`NotFound` when it gives
    nothing to verify against (such a tarball is never kept)."""
    best: tuple[str, bytes] | None = None
    for item in str(dist.get("integrity") or "").split():
        algo, _, b64 = item.partition("-")
        if algo in ("sha512", "sha384", "sha256") and (best is None or algo == "sha512"):
            try:
                best = (algo, base64.b64decode(b64, validate=True))
            except ValueError:
                continue
    shasum = str(dist.get("shasum") or "").lower()
    if best is None and len(shasum) == 40:
        best = ("sha1", bytes.fromhex(shasum))
    if best is None:
        raise NotFound(f"{name}@{version}: the upstream gives no integrity to verify against")
    url = str(dist.get("tarball") or "")
    if not url.startswith(("http://", "https://")):
        url = urllib.parse.urljoin(upstream_base, f"{name}/-/{tarball_filename(name, version)}")
    return Expected(best[0], best[1], shasum, url)


def lenient_info(data: bytes, problems: list[str]) -> TarballInfo:
    """What a mirrored tarball holds when it fails our publish-time checks: public
    packages are older and untidier than what we accept from publishers. The problems
    go to the reviewer as a needs-review vote instead."""
    files: list[TarballFile] = []
    root = "package"
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for m in tar:
                if m.isfile():
                    root = m.name.split("/", 1)[0]
                    files.append(TarballFile(m.name.partition("/")[2], m.size, m.mode))
    except (tarfile.TarError, OSError, EOFError) as exc:
        problems.append(f"unreadable archive: {exc}")
    return TarballInfo(root=root, package_json={}, gati_module=None, readme=None,
                       files=tuple(files), file_count=len(files),
                       unpacked_size=sum(f.size for f in files))


class UpstreamTarballs:
    def __init__(self, settings: Settings, blobs: BlobStore, plugins: PluginHost,
                 store: VersionStore, clients: dict[str, UpstreamClient],
                 plugin_state: Callable[[], tuple[dict[str, dict[str, Any]], set[str]]],
                 existing_names: Callable[[], frozenset[str]],
                 count: Callable[[str, int], None]) -> None:
        self.settings = settings
        self.blobs = blobs
        self.plugins = plugins
        self.store = store
        self.clients = clients
        self._plugin_state = plugin_state
        self._existing_names = existing_names
        self._count = count

    def open(self, name: str, version: str, upstream: str, manifest: dict[str, Any],
             verdict: Verdict, published: datetime | None,
             deliver: bool) -> tuple[int | None, Iterator[bytes]]:
        """Start fetching ``name@version``; returns the announced length and the body.
        With ``deliver`` the body is the tarball (streamed); without it, iterating it
        fetches, checks and stores, yielding nothing. Raises :class:`Unavailable` when
        the upstream cannot be reached, :class:`NotFound` when it has nothing to verify."""
        up = self.settings.upstream(upstream)
        client = self.clients.get(upstream)
        if up is None or client is None:
            raise Unavailable(f"no upstream called {upstream} is configured")
        expected = expected_for(up.base, name, version, manifest["dist"])
        try:
            stream = client.tarball(expected.url)
        except UpstreamUnavailable as exc:
            self._count("upstream_errors", 1)
            raise Unavailable(f"cannot fetch {name}@{version} from {upstream}: {exc}") from None
        limit = self.settings.limits.max_tarball_size
        if stream.length is not None and stream.length > limit:
            stream.close()
            raise TooLarge(f"{name}@{version} is larger than {limit} bytes")
        body = self._transfer(name, version, upstream, manifest, verdict, published, expected,
                              stream, deliver)
        return stream.length, body

    def _transfer(self, name: str, version: str, upstream: str, manifest: dict[str, Any],
                  verdict: Verdict, published: datetime | None, expected: Expected,
                  stream: Any, deliver: bool) -> Iterator[bytes]:
        writer = self.blobs.writer()
        hasher = hashlib.new(expected.algorithm)
        sha1 = hashlib.sha1()
        limit = self.settings.limits.max_tarball_size
        held: bytes | None = None
        kept = False
        try:
            for chunk in stream.chunks():
                if writer.size + len(chunk) > limit:
                    raise TarballRefused(f"{name}@{version} is larger than {limit} bytes")
                writer.write(chunk)
                hasher.update(chunk)
                sha1.update(chunk)
                if held is not None and deliver:
                    yield held
                held = chunk
            if stream.length is not None and writer.size != stream.length:
                raise TarballRefused(f"{name}@{version}: truncated ({writer.size} of "
                                     f"{stream.length} bytes)")
            if hasher.digest() != expected.digest or \
                    (expected.shasum and sha1.hexdigest() != expected.shasum):
                raise TarballRefused(f"{name}@{version}: the tarball does not match the "
                                     f"upstream's integrity")
            result = self._keep(writer, name, version, upstream, manifest, verdict, published,
                                sha1.hexdigest())
            kept = True
            self._count("tarball_fetches", 1)
            if result.state != VersionState.APPROVED.value:
                if deliver:
                    raise TarballRefused(f"{name}@{version} is {result.state}: {result.reason}")
                return
            if held is not None and deliver:
                yield held
        except UpstreamUnavailable as exc:
            self._count("upstream_errors", 1)
            self._count("tarballs_refused", 1)
            log.warning("upstream tarball %s@%s from %s broke off: %s", name, version,
                        upstream, exc)
            raise TarballRefused(str(exc)) from None
        except TarballRefused as exc:
            if not kept:
                self._count("tarballs_refused", 1)
                log.warning("refused upstream tarball %s@%s from %s: %s", name, version,
                            upstream, exc)
            raise
        finally:
            stream.close()
            if not kept:
                writer.abort()

    def _keep(self, writer: BlobWriter, name: str, version: str, upstream: str,
              manifest: dict[str, Any], verdict: Verdict, published: datetime | None,
              shasum: str) -> MirroredVersion:
        data = writer.data()
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
        limits = self.settings.limits
        problems: list[str] = []
        try:
            info = inspect_tarball(data, max_compressed=limits.max_tarball_size,
                                   max_unpacked=limits.max_unpacked_size,
                                   max_files=limits.max_files)
        except TooLarge as exc:
            raise TarballRefused(f"{name}@{version}: {exc}") from None
        except ValidationFailed as exc:
            problems = [str(d.message if not d.field else f"{d.field}: {d.message}")
                        for d in exc.details] or [str(exc)]
            info = lenient_info(data, problems)
        configs, disabled = self._plugin_state()
        candidate = hooks.Candidate(
            name=name, version=version, manifest=manifest, gati_module=info.gati_module,
            files=tuple(hooks.CandidateFile(f.path, f.size) for f in info.files),
            publisher=upstream, source="upstream", read_file=tarball_reader(data, info.root),
            existing_names=self._existing_names)
        votes = self.plugins.review(candidate, configs, disabled)
        if problems:
            votes.append(RecordedVote("mirror", hooks.Decision.NEEDS_REVIEW,
                                      tuple(f"tarball: {p}" for p in problems[:20])))
        state, reason = self._state(verdict, votes)
        digest = writer.commit()
        return self.store.add(MirroredVersion(
            name=name, version=version, upstream=upstream, manifest=manifest, info=info,
            digest=digest, integrity=integrity, shasum=shasum, size=len(data),
            published_at=published or datetime.now(timezone.utc), state=state.value,
            reason=reason, votes=tuple(votes)), disabled)

    @staticmethod
    def _state(verdict: Verdict, votes: list[RecordedVote]) -> tuple[VersionState, str]:
        if verdict.offer is Offer.HOLD:
            state, reason = decide("manual", votes)
            return state, verdict.reason if state is VersionState.PENDING else reason
        state, reason = decide(verdict.mode, votes)
        if verdict.preapproved and state is VersionState.APPROVED:
            reason = verdict.reason
        return state, reason
