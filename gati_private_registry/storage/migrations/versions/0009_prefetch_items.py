"""prefetch: one row per package of a job (resumable), and the job's current item

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 10:00:00.000000
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('prefetch_items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('job_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=214), nullable=False),
    sa.Column('spec', sa.String(length=256), nullable=False),
    sa.Column('version', sa.String(length=256), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['prefetch_jobs.id'],
                            name=op.f('fk_prefetch_items_job_id_prefetch_jobs'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prefetch_items')),
    sa.UniqueConstraint('job_id', 'name', 'spec', name=op.f('uq_prefetch_items_job_id')),
    )
    with op.batch_alter_table('prefetch_items', schema=None) as batch_op:
        batch_op.create_index('ix_prefetch_items_job_status', ['job_id', 'status'], unique=False)
    with op.batch_alter_table('prefetch_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('current', sa.String(length=500), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('source', sa.String(length=16), nullable=False,
                                      server_default='list'))


def downgrade() -> None:
    with op.batch_alter_table('prefetch_jobs', schema=None) as batch_op:
        batch_op.drop_column('source')
        batch_op.drop_column('current')
    with op.batch_alter_table('prefetch_items', schema=None) as batch_op:
        batch_op.drop_index('ix_prefetch_items_job_status')
    op.drop_table('prefetch_items')
