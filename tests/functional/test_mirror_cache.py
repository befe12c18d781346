"""The mirror's metadata cache: 404s remembered in the database (shared by processes),
the memory cap, HEAD without fetching, the stale log line (both backends)."""
from __future__ import annotations

import dataclasses
import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select, update

from gati_private_registry.services import Services, build_services
from gati_private_registry.services.upstream import KEYS_PATH
from gati_private_registry.services.upstream import metadata
from gati_private_registry.settings import Settings
from gati_private_registry.settings_mirror import MirrorSettings
from gati_private_registry.storage.models import UpstreamPackument, Version

from .driver import Registry
from .fake_upstream import FakeUpstream
from .test_mirror import age_cache, fake, read, services, settings_overrides  # noqa: F401


def asked(fake: FakeUpstream, what: str) -> int:
    return len([r for r in fake.requests if r == what])


def test_an_upstream_404_is_remembered_for_every_process(
        registry: Registry, fake: FakeUpstream, services: Services, settings: Settings) -> None:
    assert registry.packument("leftpad").status_code == 200   # merging asks for the keys
    assert registry.packument("no-such-pkg").status_code == 404
    assert asked(fake, f"document {KEYS_PATH}") == 1
    assert asked(fake, "packument no-such-pkg") == 1
    other = build_services(settings, upstream_clients={"public": fake})  # another process
    try:
        assert other.mirror.upstream_keys() == []
        with pytest.raises(Exception, match="not in the upstream"):
            other.mirror.docs.get("no-such-pkg", "public")
        assert asked(fake, f"document {KEYS_PATH}") == 1       # nobody asked again
        assert asked(fake, "packument no-such-pkg") == 1
    finally:
        other.close()
    with services.db.read() as s:  # and the status does not count them as cached
        assert s.scalar(select(func.count()).select_from(UpstreamPackument).where(
            UpstreamPackument.digest == metadata.MISSING)) == 2
    # past max_age the upstream is asked again, and what it now has is served
    fake.add("no-such-pkg", "1.0.0")
    services.mirror.docs._missing.clear()
    with services.db.write() as s:
        s.execute(update(UpstreamPackument).where(UpstreamPackument.name == "no-such-pkg")
                  .values(fetched_at=datetime.now(timezone.utc) - timedelta(hours=1)))
    assert registry.packument("no-such-pkg").status_code == 200
    assert asked(fake, "packument no-such-pkg") == 2


def test_memory_cache_is_capped(fake: FakeUpstream, settings: Settings,
                                services: Services) -> None:
    for name in ("a-pkg", "b-pkg", "c-pkg"):
        fake.add(name, "1.0.0")
    size = len(json.dumps(fake.docs["a-pkg"]).encode())
    capped = dataclasses.replace(settings, mirror=MirrorSettings(memory_cache_bytes=2 * size + 10))
    svc = build_services(capped, upstream_clients={"public": fake})
    try:
        docs = svc.mirror.docs
        for name in ("a-pkg", "b-pkg", "c-pkg"):
            docs.get(name, "public")
        assert docs.memory_bytes <= 2 * size + 10 and list(docs._docs) == ["b-pkg", "c-pkg"]
        before = len(fake.requests)
        assert docs.get("a-pkg", "public").data["name"] == "a-pkg"  # from the database
        assert len(fake.requests) == before and "b-pkg" not in docs._docs
    finally:
        svc.close()


def test_head_on_an_uncached_tarball_fetches_nothing(registry: Registry, fake: FakeUpstream,
                                                     services: Services, client: Any) -> None:
    headers = {"Authorization": f"Bearer {registry.token('admin', 'read')}"}
    resp = client.head("/npm/leftpad/-/leftpad-1.1.0.tgz", headers=headers)
    assert resp.status_code == 200 and resp.data == b""
    assert not [r for r in fake.requests if r.startswith("tarball")]
    assert client.head("/npm/leftpad/-/leftpad-7.0.0.tgz", headers=headers).status_code == 404
    fake.add("@held/pkg", "1.0.0")
    assert client.head("/npm/@held/pkg/-/pkg-1.0.0.tgz", headers=headers).status_code == 404
    with services.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Version)) == 0  # nothing queued
    read(registry.tarball("leftpad", "1.1.0"))
    assert client.head("/npm/leftpad/-/leftpad-1.1.0.tgz", headers=headers).status_code == 200


def test_stale_log_line_repeats_while_the_outage_lasts(
        registry: Registry, fake: FakeUpstream, services: Services,
        caplog: pytest.LogCaptureFixture) -> None:
    assert registry.packument("leftpad").status_code == 200
    fake.down = True
    with caplog.at_level(logging.WARNING, logger=metadata.__name__):
        for _ in range(3):
            age_cache(services, "leftpad")
            services.mirror.docs._backoff.clear()
            assert "110" in registry.packument("leftpad").headers["Warning"]
        assert len([r for r in caplog.records if "stale metadata for leftpad" in r.message]) == 1
        services.mirror.docs._warned["leftpad"] -= metadata.STALE_LOG_EVERY
        age_cache(services, "leftpad")
        services.mirror.docs._backoff.clear()
        registry.packument("leftpad")
        assert len([r for r in caplog.records if "stale metadata for leftpad" in r.message]) == 2
