"""Re-signing after a key change by the follower of the changes feed that runs in the
server processes (both backends)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from gati_private_registry.services.resign_worker import ResignFollower
from gati_private_registry.testing import ModuleSpec

from .driver import Registry


def signatures(registry: Registry, name: str) -> list[dict[str, str]]:
    return registry.doc(name)["versions"]["1.0.0"]["dist"]["signatures"]  # type: ignore[no-any-return]


def test_a_rotation_is_finished_by_the_follower_even_after_a_crash(registry: Registry) -> None:
    for i in range(4):
        registry.publish(ModuleSpec(f"follow-{i}", "1.0.0"))
    services = registry.services
    a = ResignFollower(services.db, services.keys, holder="process-a")
    b = ResignFollower(services.db, services.keys, holder="process-b")
    t0 = datetime.now(timezone.utc)
    # both catch up with history first (the first start's keys.change: nothing to sign)
    first = a.run_once(lambda: t0)
    assert first.held and first.signed == 0 and a.caught_up()
    assert not b.run_once(lambda: t0).held            # one holder at a time

    services.keys.rotate(None)                         # as `keys rotate --background`
    assert services.keys.pending_count() == (4, 4)
    assert not a.caught_up()
    # process a dies before its next pass; b takes the lease once it has expired
    later = t0 + timedelta(seconds=31)
    done = b.run_once(lambda: later)
    assert done.held and done.signed == 4 and b.caught_up()
    assert services.keys.pending_count() == (0, 4)
    assert all(len(signatures(registry, f"follow-{i}")) == 2 for i in range(4))
    # idempotent: nothing new, nothing signed; a is kept out while b holds the lease
    assert b.run_once(lambda: later).signed == 0
    assert not a.run_once(lambda: later).held
    # a publish is a change too, but no key change: the follower only moves on
    registry.publish(ModuleSpec("follow-new", "1.0.0"))
    assert b.run_once(lambda: later).signed == 0 and b.caught_up()
