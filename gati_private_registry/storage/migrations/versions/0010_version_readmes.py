"""versions keep their own README; the package's text is the latest approved version's

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 10:00:00.000000

Until now every publish, held ones too, wrote its description and README onto the
package row, so a pending (or later rejected) version changed what everyone read. The
backfill gives the package's README to the version it came from (the newest one
published here: each publish carrying a README replaced it), then sets the package's
description and README from the version at ``latest`` among approved versions, as the
registry now does on every change. Where that changes a package, its stored packument
is patched to match (so caches revalidate) and a ``package.text`` change is appended
(so each replica's search index re-reads it). A README that only a newer held version's
publish had replaced cannot be recovered here: that package shows none until its next
approved version.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any, Sequence

from alembic import op
import sqlalchemy as sa

from gati_private_registry.services.validation.names import highest_version, version_sort_key


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

#: packages read per query
_BATCH = 500

_packages = sa.table("packages", sa.column("id", sa.Integer), sa.column("name", sa.String),
                     sa.column("description", sa.Text), sa.column("readme", sa.Text),
                     sa.column("readme_filename", sa.String))
_versions = sa.table("versions", sa.column("id", sa.Integer), sa.column("package_id", sa.Integer),
                     sa.column("version", sa.String), sa.column("state", sa.String),
                     sa.column("manifest", sa.JSON), sa.column("upstream", sa.String),
                     sa.column("published_at", sa.DateTime(timezone=True)),
                     sa.column("unpublished_at", sa.DateTime(timezone=True)),
                     sa.column("readme", sa.Text), sa.column("readme_filename", sa.String))
_tags = sa.table("dist_tags", sa.column("package_id", sa.Integer), sa.column("tag", sa.String),
                 sa.column("version", sa.String))
_packuments = sa.table("packuments", sa.column("package_id", sa.Integer),
                       sa.column("full", sa.LargeBinary), sa.column("etag", sa.String))
_changes = sa.table("changes", sa.column("kind", sa.String), sa.column("package", sa.String),
                    sa.column("version", sa.String), sa.column("payload", sa.JSON),
                    sa.column("at", sa.DateTime(timezone=True)))


def upgrade() -> None:
    with op.batch_alter_table('versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('readme', sa.Text(), server_default='', nullable=False))
        batch_op.add_column(sa.Column('readme_filename', sa.String(length=255), server_default='',
                                      nullable=False))
    conn = op.get_bind()
    last = -1
    while True:
        pkgs = conn.execute(sa.select(_packages).where(_packages.c.id > last)
                            .order_by(_packages.c.id).limit(_BATCH)).all()
        if not pkgs:
            break
        last = pkgs[-1].id
        _backfill(conn, pkgs)


def _backfill(conn: Any, pkgs: Sequence[Any]) -> None:
    ids = [p.id for p in pkgs]
    versions: dict[int, list[Any]] = {}
    for v in conn.execute(sa.select(_versions.c.id, _versions.c.package_id, _versions.c.version,
                                    _versions.c.state, _versions.c.upstream,
                                    _versions.c.published_at, _versions.c.unpublished_at)
                          .where(_versions.c.package_id.in_(ids))):
        versions.setdefault(v.package_id, []).append(v)
    latest = dict(conn.execute(sa.select(_tags.c.package_id, _tags.c.version).where(
        _tags.c.package_id.in_(ids), _tags.c.tag == "latest")).all())
    # package id -> (id of the version owning its README, id of the version at latest)
    owners: dict[int, int] = {}
    shown: dict[int, int] = {}
    for p in pkgs:
        vs = versions.get(p.id, [])
        local = [v for v in vs if v.upstream is None]
        if p.readme and local:
            owner = max(local, key=lambda v: (v.published_at, v.id))
            owners[p.id] = owner.id
            conn.execute(_versions.update().where(_versions.c.id == owner.id).values(
                readme=p.readme, readme_filename=p.readme_filename))
        live = {v.version: v for v in vs
                if v.state == "approved" and v.unpublished_at is None}
        if live:
            tag = latest.get(p.id)
            at = tag if tag in live else (highest_version(live) or max(live, key=version_sort_key))
            shown[p.id] = live[at].id
    texts = {r.id: r for r in conn.execute(
        sa.select(_versions.c.id, _versions.c.manifest, _versions.c.readme,
                  _versions.c.readme_filename).where(_versions.c.id.in_(list(shown.values()))))
             } if shown else {}
    now = datetime.now(timezone.utc)
    for p in pkgs:
        row = texts.get(shown.get(p.id, -1))
        text = ("", "", "") if row is None else _text(row)
        if text == (p.description, p.readme, p.readme_filename):
            continue
        conn.execute(_packages.update().where(_packages.c.id == p.id).values(
            description=text[0], readme=text[1], readme_filename=text[2]))
        doc = conn.execute(sa.select(_packuments.c.full).where(
            _packuments.c.package_id == p.id)).scalar()
        if doc is not None:
            full = json.loads(doc)
            full.update({"description": text[0], "readme": text[1], "readmeFilename": text[2]})
            body = json.dumps(full, separators=(",", ":"), ensure_ascii=False).encode()
            conn.execute(_packuments.update().where(_packuments.c.package_id == p.id).values(
                full=body, etag=hashlib.sha256(body).hexdigest()[:32]))
        conn.execute(_changes.insert().values(kind="package.text", package=p.name, version=None,
                                              payload={"by": "migration 0010"}, at=now))


def _text(row: Any) -> tuple[str, str, str]:
    """(description, readme, readme filename) as ``packuments.render`` derives them."""
    manifest = row.manifest if isinstance(row.manifest, dict) else {}
    readme, filename = row.readme, row.readme_filename
    if not readme and isinstance(manifest.get("readme"), str):
        readme = manifest["readme"]
        filename = manifest.get("readmeFilename")
        filename = filename if isinstance(filename, str) else ""
    elif not readme:
        filename = ""
    return str(manifest.get("description") or ""), readme, filename


def downgrade() -> None:
    with op.batch_alter_table('versions', schema=None) as batch_op:
        batch_op.drop_column('readme_filename')
        batch_op.drop_column('readme')
