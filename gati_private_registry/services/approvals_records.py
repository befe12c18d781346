"""Rows that record how a version's state was decided: plugin votes and transitions,
and the file reader plugins get. Written inside the caller's transaction."""
from __future__ import annotations

import io
import tarfile
from datetime import datetime
from typing import Any, Callable

from sqlalchemy import insert

from ..storage.models import Transition, VoteRecord
from .plugins import RecordedVote


def tarball_reader(data: bytes, root: str) -> Callable[[str], bytes]:
    """``read_file(path)`` over an already validated tarball (see inspect_tarball)."""
    cache: dict[str, bytes] = {}

    def read_file(path: str) -> bytes:
        if not cache:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                for member in tar:
                    if member.isfile():
                        fh = tar.extractfile(member)
                        if fh is not None:
                            cache[member.name.partition("/")[2]] = fh.read()
        return cache[path]
    return read_file


def record_votes(conn: Any, version_id: int, votes: list[RecordedVote], at: datetime) -> None:
    for v in votes:
        conn.execute(_INSERT_VOTE, {"version_id": version_id, "plugin": v.plugin,
                                    "decision": v.decision.value, "reasons": list(v.reasons),
                                    "at": at})


_INSERT_VOTE = insert(VoteRecord)
_INSERT_TRANSITION = insert(Transition)


def record_transition(conn: Any, version_id: int, old: str | None, new: str, actor: str,
                      reason: str, at: datetime) -> None:
    conn.execute(_INSERT_TRANSITION, {"version_id": version_id, "old_state": old,
                                      "new_state": new, "actor": actor, "reason": reason,
                                      "at": at})


