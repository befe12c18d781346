"""Sending one webhook event: the signature, the exact body bytes, and a POST that
never follows redirects and never raises. Receivers verify the signature like this::

    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    ok = hmac.compare_digest(expected, request.headers["X-Gati-Signature-256"])
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Mapping

USER_AGENT = "gati-registry-webhooks"
_MAX_ERROR = 300


@dataclass(frozen=True)
class Outcome:
    """The result of one POST: the HTTP status (None when there was no answer)."""

    status: int | None
    error: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


Transport = Callable[[str, bytes, Mapping[str, str], float], Outcome]


def sign(secret: str, body: bytes) -> str:
    """The ``X-Gati-Signature-256`` value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def body_of(delivery_id: int, payload: Mapping[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed) for a delivery; the same for every attempt."""
    return json.dumps({"id": delivery_id, **payload}, separators=(",", ":"),
                      sort_keys=True, ensure_ascii=False).encode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # a receiver that moved must be re-registered: following a redirect would send the
    # signed event somewhere no admin chose
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ERROR else text[:_MAX_ERROR - 1] + "…"


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Outcome:
    """POST ``body`` to ``url``; never raises. Redirects are not followed."""
    request = urllib.request.Request(url, data=body, method="POST", headers=dict(headers))
    started = time.monotonic()
    status: int | None = None
    try:
        with _OPENER.open(request, timeout=timeout) as resp:
            resp.read(65536)
            status, error = resp.status, ""
    except urllib.error.HTTPError as exc:
        status = exc.code
        if 300 <= exc.code < 400:
            error = f"HTTP {exc.code}: redirect to {exc.headers.get('Location', '?')} not followed"
        else:
            detail = exc.read(200).decode("utf-8", "replace")
            error = f"HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail.strip() else "")
        exc.close()
    except urllib.error.URLError as exc:
        reason = exc.reason
        error = (f"no answer within {timeout:g} s" if isinstance(reason, TimeoutError)
                 else f"cannot connect: {reason}")
    except TimeoutError:
        error = f"no answer within {timeout:g} s"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        error = f"{exc.__class__.__name__}: {exc}"
    return Outcome(status, _short(error), int((time.monotonic() - started) * 1000))
