"""Curation of upstream versions: which ones a packument offers before anyone has
fetched them, and which state a fetched one starts in.

Decided from, in order: an admin's ``block`` rule (never served), an admin's ``approve``
rule (pre-approved range), the package pattern's approval mode (``manual``: a person
decides, on the first request), and its ``min_age`` (younger versions wait for a person).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

import nodesemver

from ...settings import ApprovalSettings
from ...settings_mirror import PackageSource
from ..plugins import mode_for


class Offer(str, enum.Enum):
    #: listed in the packument; its tarball is fetched and reviewed on first request
    LIST = "list"
    #: not listed; a request for it queues it for a person
    HOLD = "hold"
    #: never listed, never fetched
    BLOCK = "block"


@dataclass(frozen=True)
class Rule:
    id: int
    name: str
    range: str
    action: str
    reason: str
    created_by: str
    created_at: datetime


def satisfies(version: str, range_: str) -> bool:
    """Whether ``version`` is in the semver ``range_`` (npm's rules, prereleases only
    when the range names them)."""
    try:
        return bool(nodesemver.satisfies(version, range_, loose=True))
    except (ValueError, TypeError, AttributeError):
        return False


def valid_range(range_: str) -> bool:
    try:
        return nodesemver.make_range(range_, loose=True) is not None
    except (ValueError, TypeError, AttributeError):
        return False


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Verdict:
    offer: Offer
    #: the approval mode a fetched version is decided with
    mode: str
    reason: str
    preapproved: bool = False


def judge(source: PackageSource, approvals: ApprovalSettings, rules: Iterable[Rule],
          name: str, version: str, published: datetime | None, now: datetime) -> Verdict:
    """What to do with upstream ``name@version`` (see the module docstring)."""
    rules = list(rules)
    for r in rules:
        if r.action == "block" and satisfies(version, r.range):
            return Verdict(Offer.BLOCK, "manual",
                           f"blocked by {r.created_by} ({name}@{r.range}): {r.reason}".rstrip(": "))
    for r in rules:
        if r.action == "approve" and satisfies(version, r.range):
            return Verdict(Offer.LIST, "auto", f"pre-approved by {r.created_by} "
                                               f"({name}@{r.range})", preapproved=True)
    mode = source.approval or mode_for(approvals, name)
    if mode == "manual":
        return Verdict(Offer.HOLD, mode, "upstream version waiting for an approver "
                                         "(policy: manual)")
    if source.min_age > 0:
        age = (now - published).total_seconds() if published is not None else None
        if age is None or age < source.min_age:
            days = source.min_age / 86400
            return Verdict(Offer.HOLD, mode, f"upstream version younger than "
                                             f"{days:g} days: waiting for an approver")
    return Verdict(Offer.LIST, mode, f"upstream version (policy: {mode})")
