"""Secret scanning: rejects packages that ship credentials.

Every text file of the package is scanned (binaries, detected like git does by a NUL
byte in the first 8 KiB, and files over ``max_file_size`` are skipped) for private
keys, well-known token formats, hard-coded high-entropy passwords, JWTs, ``.npmrc``
files with auth tokens and ``.env`` files. A reason names the file, the line and the
kind of secret, and shows at most the secret's public prefix (``ghp_``, ``AKIA``) and
its length: a reason is shown in the panel and in audit logs, so it must never carry
the secret itself.
"""
from __future__ import annotations

import math
import posixpath
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from gati_private_registry.hooks import Candidate, Decision, Vote, hookimpl

from ._common import action_schema, decision_of, globs_schema, human_size, matches_any

_BINARY_SNIFF = 8 * 1024
_MAX_FINDINGS_PER_FILE = 10  # a leaked key file can match hundreds of times
_MAX_REASONS = 50


@dataclass(frozen=True)
class _Pattern:
    """One kind of secret. Each must start at a word boundary; the boundary is checked in
    Python (:func:`_matches`), not with a leading ``\\b``: a pattern that begins with a
    literal lets ``re`` jump from one occurrence of it to the next, where ``\\b`` makes it
    try every position (15-60x slower on a 40 KB file)."""
    kind: str
    regex: re.Pattern[str]
    #: characters of the match that are a public, non-secret prefix and may be shown
    shown_prefix: int = 0
    #: regex group holding the secret value (0 = the whole match)
    group: int = 0
    #: must not follow a word character (what a leading ``\\b`` said)
    boundary: bool = True


_PATTERNS: tuple[_Pattern, ...] = (
    _Pattern("private key", re.compile(
        r"-----BEGIN (?:RSA |EC |OPENSSH |DSA |PGP |ENCRYPTED |SSH2 ENCRYPTED )?"
        r"PRIVATE KEY(?: BLOCK)?-----"), boundary=False),
    _Pattern("AWS access key id", re.compile(r"A(?:KIA|SIA)[0-9A-Z]{16}\b"), 4),
    _Pattern("AWS secret access key", re.compile(
        r"(?i)aws_?secret(?:_?access)?_?key\b[\"']?\s*[:=]\s*[\"']?"
        r"([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"), 0, 1),
    _Pattern("GitHub token", re.compile(r"gh[pousr]_[A-Za-z0-9]{36,255}\b"), 4),
    _Pattern("GitHub fine-grained token", re.compile(r"github_pat_[A-Za-z0-9_]{22,255}\b"), 11),
    _Pattern("GitLab token", re.compile(r"glpat-[A-Za-z0-9_\-]{20,}"), 6),
    _Pattern("Slack token", re.compile(r"xox[abprs]-[A-Za-z0-9-]{10,}"), 5),
    _Pattern("Stripe live key", re.compile(r"[sr]k_live_[A-Za-z0-9]{16,}"), 8),
    _Pattern("Google API key", re.compile(r"AIza[0-9A-Za-z_\-]{35}(?![0-9A-Za-z_\-])"), 4),
    _Pattern("npm token", re.compile(r"npm_[A-Za-z0-9]{36}\b"), 4),
    _Pattern("JSON Web Token", re.compile(
        r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"), 3),
)
_WORD = re.compile(r"\w")


def _matches(pattern: _Pattern, text: str) -> Iterator[re.Match[str]]:
    """What ``\\b`` + ``pattern.regex`` would find with ``finditer``: matches that do not
    follow a word character (unless ``pattern.boundary`` is off). After a refused match
    the search goes on from its next character, not its end, so no match that starts
    inside it is skipped."""
    regex, boundary = pattern.regex, pattern.boundary
    pos = 0
    while True:
        m = regex.search(text, pos)
        if m is None:
            return
        start = m.start()
        if boundary and start > 0 and _WORD.match(text, start - 1):
            pos = start + 1
            continue
        yield m
        pos = max(m.end(), start + 1)


# `password = "…"`, `apiToken: '…'`, `"client_secret": "…"`; the value is then tested
# for entropy, so `password = "${process.env.PASSWORD}"` and prose are not flagged
# The generic check finds each keyword first and then matches the assignment only from
# there: a pattern with open-ended ``[\w.-]*`` around the keyword made the engine
# backtrack cubically over long runs of word characters (a minified bundle, "xxxx..."),
# seconds per file, a denial of service from one crafted package. Now the work is linear
# in the keyword occurrences, each bounded by a 64-character window.
_GENERIC_KEYWORD = re.compile(r"(?i)password|passwd|pwd|secret|token|api_?key|access_?key")
_GENERIC_TAIL = re.compile(r"[\w.-]{0,64}?[\"']?\s{0,16}[:=]\s{0,16}([\"'`])([^\"'`\s]{20,512})\1")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_NPMRC_AUTH = re.compile(r"^\s*(?://[^\s=]*:)?(_authToken|_auth|_password)\s*=\s*\S",
                         re.MULTILINE)
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(\S.*)$",
                       re.MULTILINE)
# AWS's documented example keys are everywhere in docs and SDK tests
_KNOWN_EXAMPLES = ("EXAMPLE",)
_PLACEHOLDER = re.compile(r"\$\{|process\.env|<[^>]*>|\{\{|%\(|x{8,}|\*{4,}", re.IGNORECASE)
_ENV_TEMPLATE_SUFFIXES = (".example", ".sample", ".template", ".dist", ".defaults")


@hookimpl
def gati_registry_plugin_settings() -> Mapping[str, Any]:
    """Returns the JSON Schema of this plugin's settings."""
    return {
        "type": "object",
        "title": "Secrets",
        "additionalProperties": False,
        "properties": {
            "action": action_schema("reject", "What to do with a package that contains a "
                                    "secret."),
            "ignore_paths": globs_schema([], "File-path globs (relative to the package "
                                             "root, '*' also matches '/') not scanned."),
            "max_file_size": {"type": "integer", "minimum": 1, "default": 1024 * 1024,
                              "description": "Files larger than this (bytes) are not "
                                             "scanned."},
            "entropy_threshold": {"type": "number", "minimum": 0, "maximum": 8,
                                  "default": 3.5,
                                  "description": "Shannon entropy (bits per character) "
                                                 "above which a quoted value assigned to "
                                                 "a password/secret/token is a secret."},
        },
    }


@hookimpl
def gati_registry_review_version(candidate: Candidate, config: Mapping[str, Any]) -> Vote:
    """Returns ``config["action"]`` with one masked reason per finding, or approve
    saying how many files were scanned. Raises ValueError for an ``action`` that is not
    a decision."""
    action = decision_of(config, "action", Decision.REJECT)
    ignore = tuple(config.get("ignore_paths", ()))
    max_size = int(config.get("max_file_size", 1024 * 1024))
    threshold = float(config.get("entropy_threshold", 3.5))

    reasons: list[str] = []
    scanned = skipped = 0
    for f in candidate.files:
        if matches_any(f.path, ignore) is not None:
            continue
        if f.size > max_size:
            skipped += 1
            continue
        try:
            data = candidate.read_file(f.path)
        except KeyError:  # listed but unreadable: nothing to scan, not our verdict
            skipped += 1
            continue
        if b"\x00" in data[:_BINARY_SNIFF]:
            skipped += 1
            continue
        scanned += 1
        text = data.decode("utf-8", errors="replace")
        for finding in list(scan_text(f.path, text, threshold))[:_MAX_FINDINGS_PER_FILE]:
            reasons.append(finding)
    if reasons:
        if len(reasons) > _MAX_REASONS:
            reasons[_MAX_REASONS:] = [f"… and {len(reasons) - _MAX_REASONS} more findings"]
        return Vote(action, tuple(reasons))
    note = (f"; {skipped} binary or larger than {human_size(max_size)} not scanned"
            if skipped else "")
    return Vote(Decision.APPROVE, (f"no secrets found in {scanned} text files{note}",))


def scan_text(path: str, text: str, entropy_threshold: float = 3.5) -> Iterator[str]:
    """Yields one masked, human-readable finding per secret in ``text`` (the contents
    of ``path``), in order of appearance within each check."""
    base = posixpath.basename(path)
    if base == ".npmrc":
        for m in _NPMRC_AUTH.finditer(text):
            yield (f"{path}:{_line(text, m.start())}: .npmrc with a registry credential "
                   f"({m.group(1)}=***)")
    if _is_env_file(base):
        names = [m.group(1) for m in _ENV_LINE.finditer(text)
                 if m.group(2).strip().strip("\"'")]
        if names:
            shown = ", ".join(names[:8]) + (", …" if len(names) > 8 else "")
            yield f"{path}: a .env file with {len(names)} values ({shown}); values not shown"
    for pattern in _PATTERNS:
        for m in _matches(pattern, text):
            secret = m.group(pattern.group)
            if any(word in secret for word in _KNOWN_EXAMPLES):
                continue
            yield (f"{path}:{_line(text, m.start())}: {pattern.kind} "
                   f"{mask(secret, pattern.shown_prefix)}")
    for name, value, offset in _generic_assignments(text):
        if _PLACEHOLDER.search(value) or not _looks_random(value, entropy_threshold):
            continue
        if any(next(_matches(p, value), None) for p in _PATTERNS):
            continue  # already reported with its precise kind
        yield (f"{path}:{_line(text, offset)}: hard-coded secret assigned to "
               f"{name[:60]!r} {mask(value, 0)}")


def _generic_assignments(text: str) -> Iterator[tuple[str, str, int]]:
    """``(name, value, offset)`` for each ``<...keyword...> = "value"`` in ``text``."""
    seen_end = -1
    for kw in _GENERIC_KEYWORD.finditer(text):
        if kw.start() < seen_end:
            continue  # inside an assignment already reported
        m = _GENERIC_TAIL.match(text, kw.end())
        if m is None:
            continue
        start = kw.start()
        while start > 0 and kw.start() - start < 64 and text[start - 1] in _NAME_CHARS:
            start -= 1
        tail = text[kw.end():m.start(1)]
        name = text[start:kw.end()] + tail.rstrip("\"' \t:=").rstrip()
        seen_end = m.end()
        yield name, m.group(2), start


def mask(secret: str, shown_prefix: int) -> str:
    """``secret`` reduced to its public prefix (may be empty) and its length, e.g.
    ``ghp_*** (40 chars)``; never more than that of the secret."""
    prefix = secret[:shown_prefix] if shown_prefix else ""
    return f"{prefix}*** ({len(secret)} chars)"


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value`` (0.0 for an empty string)."""
    if not value:
        return 0.0
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _looks_random(value: str, threshold: float) -> bool:
    # two character classes at least: 'your-api-token-goes-here' is prose, not a key
    classes = sum(bool(re.search(p, value)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]"))
    return classes >= 2 and shannon_entropy(value) >= threshold


def _is_env_file(base: str) -> bool:
    if base != ".env" and not base.startswith(".env."):
        return False
    # .env.example & co. are templates meant to be published
    return not base.endswith(_ENV_TEMPLATE_SUFFIXES)


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1
