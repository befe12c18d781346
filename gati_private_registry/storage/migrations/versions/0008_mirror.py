"""mirror: upstream packuments, rules, prefetch jobs

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 22:21:21.841373
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('prefetch_jobs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('specs', sa.JSON(), nullable=False),
    sa.Column('closure', sa.Boolean(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('done', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('errors', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.String(length=214), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prefetch_jobs'))
    )
    with op.batch_alter_table('prefetch_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_prefetch_jobs_status'), ['status'], unique=False)

    op.create_table('upstream_packuments',
    sa.Column('name', sa.String(length=214), nullable=False),
    sa.Column('upstream', sa.String(length=64), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('etag', sa.String(length=200), nullable=False),
    sa.Column('last_modified', sa.String(length=100), nullable=False),
    sa.Column('fetched_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_upstream_packuments'))
    )
    with op.batch_alter_table('upstream_packuments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upstream_packuments_fetched_at'), ['fetched_at'], unique=False)

    op.create_table('upstream_rules',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=214), nullable=False),
    sa.Column('range', sa.String(length=256), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_by', sa.String(length=214), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upstream_rules'))
    )
    with op.batch_alter_table('upstream_rules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upstream_rules_name'), ['name'], unique=False)

    with op.batch_alter_table('packages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('upstream', sa.String(length=64), nullable=True))

    with op.batch_alter_table('versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('upstream', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('upstream_dist', sa.JSON(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('versions', schema=None) as batch_op:
        batch_op.drop_column('upstream_dist')
        batch_op.drop_column('upstream')

    with op.batch_alter_table('packages', schema=None) as batch_op:
        batch_op.drop_column('upstream')

    with op.batch_alter_table('upstream_rules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_upstream_rules_name'))

    op.drop_table('upstream_rules')
    with op.batch_alter_table('upstream_packuments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_upstream_packuments_fetched_at'))

    op.drop_table('upstream_packuments')
    with op.batch_alter_table('prefetch_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_prefetch_jobs_status'))

    op.drop_table('prefetch_jobs')
