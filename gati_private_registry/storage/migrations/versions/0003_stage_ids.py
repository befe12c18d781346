"""stage ids

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 21:21:02.385481
"""
from __future__ import annotations

import uuid

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stage_id', sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column('tag', sa.String(length=214), server_default='latest', nullable=False))
        batch_op.create_unique_constraint(batch_op.f('uq_versions_stage_id'), ['stage_id'])

    # versions published before this migration get their stage ids now
    conn = op.get_bind()
    versions = sa.table("versions", sa.column("id", sa.Integer), sa.column("stage_id", sa.String))
    for (vid,) in conn.execute(sa.select(versions.c.id).where(versions.c.stage_id.is_(None))).all():
        conn.execute(versions.update().where(versions.c.id == vid).values(stage_id=str(uuid.uuid4())))


def downgrade() -> None:
    with op.batch_alter_table('versions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_versions_stage_id'), type_='unique')
        batch_op.drop_column('tag')
        batch_op.drop_column('stage_id')

