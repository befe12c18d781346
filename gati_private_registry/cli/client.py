"""``gati``: the developers' client. The full command set arrives with its own issue;
for now it only names itself."""
from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="gati-private-registry")
def main() -> None:
    """Gati modules from your organisation's registry."""
