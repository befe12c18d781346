"""users: when the directory (LDAP) last answered for a user, and whether that answer
was "no longer allowed" (tokens and sessions are refused until it says yes again)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26 10:00:00.000000
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('directory_checked_at', sa.DateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('directory_lost', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('directory_lost')
        batch_op.drop_column('directory_checked_at')
