"""What the user sees: tables and colours on a terminal, plain text when piped, one JSON
document on stdout with ``--json`` (messages then go to stderr, so stdout stays
parseable).

click's styling and progress bar rather than ``rich``: the client starts on every
command, and ``rich`` roughly doubles the start-up time for tables we can draw in a few
lines; colour and terminal detection come from click (which honours ``NO_COLOR`` here).
"""
from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass, field
from typing import IO, Any, Sequence, TextIO, cast

import click

from .errors import ClientError


@dataclass
class Output:
    json_mode: bool = False
    color: bool | None = None
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    err: IO[str] = field(default_factory=lambda: sys.stderr)

    @property
    def interactive(self) -> bool:
        return not self.json_mode and self.err.isatty()

    def _echo(self, text: str, *, err: bool = False) -> None:
        click.echo(text, file=self.err if err else self.out, color=self.color)

    # ---- messages (to stderr in JSON mode)

    def line(self, text: str = "") -> None:
        self._echo(text, err=self.json_mode)

    def success(self, text: str) -> None:
        self._echo(click.style("✔ ", fg="green") + text, err=self.json_mode)

    def warn(self, text: str) -> None:
        self._echo(click.style("warning: ", fg="yellow", bold=True) + text, err=True)

    def heading(self, text: str) -> None:
        self._echo(click.style(text, bold=True), err=self.json_mode)

    def styled(self, text: str, **style: Any) -> str:
        return click.style(text, **style)

    def error(self, exc: ClientError) -> None:
        if self.json_mode:
            doc: dict[str, Any] = {"error": {"code": exc.code, "message": exc.message}}
            if exc.hint:
                doc["error"]["hint"] = exc.hint
            if exc.details:
                doc["error"]["details"] = [{"field": d.field, "message": d.message}
                                           for d in exc.details]
            self.out.write(json.dumps(doc, indent=2) + "\n")
        self._echo(click.style("error: ", fg="red", bold=True) + exc.message, err=True)
        for d in exc.details:
            self._echo(f"  - {d.field}: {d.message}" if d.field else f"  - {d.message}", err=True)
        if exc.hint:
            self._echo(click.style("hint: ", fg="cyan") + exc.hint, err=True)

    # ---- results

    def data(self, doc: Any) -> None:
        """The command's result for scripts (only in JSON mode)."""
        if self.json_mode:
            self.out.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]],
              styles: Sequence[dict[str, Any]] | None = None) -> None:
        if self.json_mode:
            return
        cells = [[("" if c is None else str(c)) for c in row] for row in rows]
        widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
        self._echo("  ".join(click.style(h.ljust(w), bold=True, underline=True)
                             for h, w in zip(headers, widths)).rstrip())
        for row in cells:
            parts = []
            for i, (c, w) in enumerate(zip(row, widths)):
                style = (styles[i] if styles and i < len(styles) else {}) or {}
                parts.append(click.style(c.ljust(w), **style) if style else c.ljust(w))
            self._echo("  ".join(parts).rstrip())

    def progress(self, total: int, label: str) -> "Progress":
        return Progress(self, total, label)


class Progress:
    """A thread-safe progress bar on stderr; silent when not on a terminal."""

    def __init__(self, output: Output, total: int, label: str) -> None:
        self.output = output
        self.total = total
        self.label = label
        self._lock = threading.Lock()
        self._bar: Any = None

    def __enter__(self) -> "Progress":
        if self.output.interactive and self.total > 0:
            self._bar = click.progressbar(length=self.total, label=self.label,
                                          file=cast(TextIO, self.output.err),
                                          show_pos=True)
            self._bar.__enter__()
        return self

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

