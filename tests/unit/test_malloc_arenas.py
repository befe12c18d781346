"""``malloc_arenas``: the cap on glibc malloc arenas that ``gati-registry serve`` sets
before its workers start threads (the soak's flat memory depends on it)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from gati_private_registry.errors import ValidationFailed
from gati_private_registry.settings import load_settings

PROBE = textwrap.dedent("""
    import ctypes, sys, threading
    from gati_private_registry.cli.serve import limit_malloc_arenas
    print(limit_malloc_arenas(int(sys.argv[1])), flush=True)
    keep = []
    start = threading.Barrier(12)
    def work():
        start.wait()                      # all at once: contention makes new arenas
        for _ in range(2000):
            keep.append(bytearray(4096))
    threads = [threading.Thread(target=work) for _ in range(12)]
    for t in threads: t.start()
    for t in threads: t.join()
    ctypes.CDLL("libc.so.6").malloc_stats()   # one "Arena N:" block per arena, on stderr
""")


def _arenas(cap: int, **env: str) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", PROBE, str(cap)], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env,
                          check=True, timeout=60)
    return done.stdout.strip(), sum(1 for line in done.stderr.splitlines() if line.startswith("Arena "))


def test_the_cap_holds_with_many_threads() -> None:
    assert _arenas(2) == ("True", 2)
    said, uncapped = _arenas(0)
    assert said == "False" and uncapped > 2


def test_the_operators_environment_wins() -> None:
    said, arenas = _arenas(2, MALLOC_ARENA_MAX="3")
    assert said == "False" and arenas == 3


@pytest.mark.parametrize("key,value", [("malloc_arenas", "-1"), ("workers", "0"), ("threads", "0")])
def test_counts_out_of_range_are_refused(key: str, value: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        load_settings(environ={f"GATI_REGISTRY_{key.upper()}": value})
    assert [d.field for d in err.value.details] == [key]
