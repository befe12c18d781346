"""Built-in policy plugins of Gati Private Registry.

Each submodule is one plugin, registered through the ``gati_registry`` entry-point
group (see ``setup.cfg``) exactly like a third-party plugin would be. Importing this
package does nothing: the plugins build their tables lazily, on first review.
"""
from __future__ import annotations

__all__ = ["gati_contract", "install_scripts", "licence", "names", "secrets", "size_limits"]
