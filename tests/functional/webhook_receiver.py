"""A real HTTP receiver for webhook tests: records every request and answers what the
test tells it to (fail N times, redirect, answer slowly)."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: Message
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def signature_ok(self, secret: str) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.headers.get("X-Gati-Signature-256", ""))


class Receiver:
    """``ThreadingHTTPServer`` on 127.0.0.1 and a free port, in a daemon thread."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.failures = 0
        self.fail_status = 500
        self.redirect_to: str | None = None
        self.delay = 0.0
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def fail(self, times: int, status: int = 500) -> None:
        with self._lock:
            self.failures, self.fail_status = times, status

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.requests.append(Received(self.path, self.headers, body))
                    if receiver.redirect_to:
                        status, extra = 302, {"Location": receiver.redirect_to}
                    elif receiver.failures > 0:
                        receiver.failures -= 1
                        status, extra = receiver.fail_status, {}
                    else:
                        status, extra = 200, {}
                    delay = receiver.delay
                if delay:
                    time.sleep(delay)
                payload = b"ok" if status == 200 else b"receiver says no"
                try:
                    self.send_response(status)
                    for key, value in extra.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the sender gave up waiting (timeout tests)
                    pass

        return Handler
