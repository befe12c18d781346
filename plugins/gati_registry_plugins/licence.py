"""Licence policy: evaluates the package's SPDX licence expression against an allow
list and a deny list.

An expression is evaluated as three-valued logic over its parse tree (``allowed``,
``denied``, ``unknown``): an ``OR`` is allowed when any branch is allowed (the user may
pick that licence) and denied only when every branch is denied; an ``AND`` is denied
when any term is denied and allowed only when every term is allowed. ``X WITH exc``
takes the verdict of ``X``, except that a denied ``X`` becomes unknown, because an
exception (e.g. ``Classpath-exception-2.0``) may be exactly what makes it acceptable;
admins can list the full ``X WITH exc`` in ``allow``/``deny`` to decide it outright.
"""
from __future__ import annotations

import enum
import functools
from typing import Any, Mapping

from gati_private_registry.hooks import Candidate, Decision, Vote, hookimpl
from license_expression import (ExpressionError, LicenseSymbol, LicenseWithExceptionSymbol,
                                Licensing, get_spdx_licensing)

DEFAULT_ALLOW: tuple[str, ...] = (
    "MIT", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "ISC", "0BSD", "Unlicense",
    "CC0-1.0", "Python-2.0", "BlueOak-1.0.0",
)
DEFAULT_DENY: tuple[str, ...] = (
    "GPL-1.0-only", "GPL-1.0-or-later", "GPL-2.0-only", "GPL-2.0-or-later",
    "GPL-3.0-only", "GPL-3.0-or-later", "AGPL-1.0-only", "AGPL-1.0-or-later",
    "AGPL-3.0-only", "AGPL-3.0-or-later", "SSPL-1.0",
)


class _Verdict(enum.Enum):
    ALLOWED = "allowed"
    DENIED = "denied"
    UNKNOWN = "unknown"


@functools.cache
def _licensing() -> Licensing:
    # Built on first use, not at import: loading the SPDX list takes a moment and the
    # registry's rule is that nothing happens at import.
    return get_spdx_licensing()


@hookimpl
def gati_registry_plugin_settings() -> Mapping[str, Any]:
    """Returns the JSON Schema of this plugin's settings."""
    ids = {"type": "array", "items": {"type": "string", "minLength": 1}}
    return {
        "type": "object",
        "title": "Licence",
        "additionalProperties": False,
        "properties": {
            "allow": {**ids, "default": list(DEFAULT_ALLOW),
                      "description": "SPDX licence ids (or 'X WITH exception') that are "
                                     "acceptable."},
            "deny": {**ids, "default": list(DEFAULT_DENY),
                     "description": "SPDX licence ids that are never acceptable; "
                                    "deprecated ids such as GPL-3.0 match their -only form."},
            "unknown": {"type": "string", "enum": ["approve", "needs-review", "reject"],
                        "default": "needs-review",
                        "description": "What to do with a licence that is in neither list, "
                                       "missing, UNLICENSED, 'SEE LICENSE IN …' or not a "
                                       "valid SPDX expression."},
        },
    }


@hookimpl
def gati_registry_review_version(candidate: Candidate, config: Mapping[str, Any]) -> Vote:
    """Returns approve when the licence expression is acceptable, reject when it is
    denied, and ``config["unknown"]`` otherwise. Raises ValueError when ``unknown`` is
    not a decision (the host then records needs-review)."""
    unknown = Decision(config.get("unknown", "needs-review"))
    allow = _normalise_ids(config.get("allow", DEFAULT_ALLOW))
    deny = _normalise_ids(config.get("deny", DEFAULT_DENY))

    expression, reason = declared_expression(candidate)
    if expression is None:
        return Vote(unknown, (reason,))
    try:
        parsed = _licensing().parse(expression, validate=False)
    except ExpressionError as exc:
        return Vote(unknown, (f"licence {expression!r} is not a valid SPDX expression: {exc}",))
    if parsed is None:
        return Vote(unknown, ("the licence field is empty",))

    notes: list[str] = []
    verdict = _evaluate(parsed, allow, deny, notes)
    shown = f"{str(parsed)!r}" + (f" (declared as {expression!r})"
                                  if str(parsed) != expression else "")
    if verdict is _Verdict.ALLOWED:
        return Vote(Decision.APPROVE, (f"licence {shown} is allowed", *notes))
    if verdict is _Verdict.DENIED:
        return Vote(Decision.REJECT, (f"licence {shown} is denied", *notes))
    return Vote(unknown, (f"licence {shown} needs a decision: it is neither allowed "
                          f"nor denied by the policy", *notes))


def declared_expression(candidate: Candidate) -> tuple[str | None, str]:
    """The SPDX expression the package declares, from ``license`` (a string or the old
    ``{"type": …}`` object) or the old ``licenses`` array (read as an ``OR`` of its
    entries, npm's documented meaning). Returns ``(expression, "")``, or
    ``(None, reason)`` when there is no evaluable expression."""
    manifest = candidate.manifest
    raw: Any = manifest.get("license")
    if raw is None and manifest.get("licenses") is not None:
        entries = manifest["licenses"]
        if not isinstance(entries, list) or not entries:
            return None, "the old 'licenses' field is not a non-empty array"
        types = [_type_of(e) for e in entries]
        if any(t is None for t in types):
            return None, "an entry of the old 'licenses' array has no licence type"
        return " OR ".join(f"({t})" if len(types) > 1 else str(t) for t in types), ""
    if raw is None:
        return None, "the package declares no licence (package.json has no 'license')"
    text = _type_of(raw)
    if text is None:
        return None, "the 'license' field is neither a string nor an object with a 'type'"
    if text.upper() == "UNLICENSED":
        return None, ("the package is UNLICENSED (proprietary: no rights granted to "
                      "others)")
    if text.upper().startswith("SEE LICENSE IN"):
        path = text[len("SEE LICENSE IN"):].strip()
        present = any(f.path == path for f in candidate.files)
        return None, (f"the licence is a custom one in {path!r}"
                      + ("" if present else ", which is not in the package")
                      + "; a reviewer must read it")
    return text, ""


def _type_of(value: Any) -> str | None:
    # npm <= 2 era packages wrote {"type": "MIT", "url": "…"} (alone or in an array)
    if isinstance(value, Mapping):
        value = value.get("type")
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _normalise_ids(ids: Any) -> frozenset[str]:
    """Canonical keys of configured ids, so ``GPL-3.0`` in a list matches a package's
    ``GPL-3.0-only`` and ``mit`` matches ``MIT``. An id the parser rejects is kept
    verbatim (it can still match a verbatim ``LicenseRef-…``)."""
    out: set[str] = set()
    for item in ids:
        try:
            parsed = _licensing().parse(str(item), validate=False)
        except ExpressionError:
            out.add(str(item))
            continue
        out.add(str(parsed) if parsed is not None else str(item))
    return frozenset(out)


def _evaluate(node: Any, allow: frozenset[str], deny: frozenset[str],
              notes: list[str]) -> _Verdict:
    """The verdict of one node of a parsed expression; appends reviewer notes about
    unknown ids to ``notes``."""
    if isinstance(node, LicenseWithExceptionSymbol):
        whole = str(node)
        if whole in deny:
            return _Verdict.DENIED
        if whole in allow:
            return _Verdict.ALLOWED
        base = _evaluate(node.license_symbol, allow, deny, notes)
        if base is _Verdict.DENIED:
            notes.append(f"{node.license_symbol.key} is denied, but with "
                         f"{node.exception_symbol.key} it needs a reviewer")
            return _Verdict.UNKNOWN
        return base
    if isinstance(node, LicenseSymbol):
        key = node.key
        if key in deny:
            return _Verdict.DENIED
        if key in allow:
            return _Verdict.ALLOWED
        if key not in _licensing().known_symbols and not key.startswith("LicenseRef-"):
            notes.append(f"{key!r} is not an SPDX licence id")
        return _Verdict.UNKNOWN
    verdicts = [_evaluate(arg, allow, deny, notes) for arg in node.args]
    if isinstance(node, _licensing().OR):
        if _Verdict.ALLOWED in verdicts:
            return _Verdict.ALLOWED
        return _Verdict.DENIED if all(v is _Verdict.DENIED for v in verdicts) else _Verdict.UNKNOWN
    if isinstance(node, _licensing().AND):
        if _Verdict.DENIED in verdicts:
            return _Verdict.DENIED
        return _Verdict.ALLOWED if all(v is _Verdict.ALLOWED for v in verdicts) else _Verdict.UNKNOWN
    raise TypeError(f"unexpected node in a licence expression: {node!r}")
