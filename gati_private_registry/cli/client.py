"""``gati``: the developers' client. The commands live in
:mod:`gati_private_registry.client`; this module keeps the console-script entry point."""
from __future__ import annotations

from ..client.commands import main

__all__ = ["main"]
