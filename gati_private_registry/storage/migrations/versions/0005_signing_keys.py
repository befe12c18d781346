"""signing keys

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 21:54:39.724748
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('signing_keys',
    sa.Column('keyid', sa.String(length=100), nullable=False),
    sa.Column('algorithm', sa.String(length=32), nullable=False),
    sa.Column('public_key', sa.Text(), nullable=False),
    sa.Column('pair', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_reason', sa.Text(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('keyid', name=op.f('pk_signing_keys'))
    )
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signing_keys_pair'), ['pair'], unique=False)

    op.create_table('version_signatures',
    sa.Column('version_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('keyid', sa.String(length=100), nullable=False),
    sa.Column('sig', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['keyid'], ['signing_keys.keyid'], name=op.f('fk_version_signatures_keyid_signing_keys'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['version_id'], ['versions.id'], name=op.f('fk_version_signatures_version_id_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('version_id', 'keyid', name=op.f('pk_version_signatures'))
    )
    with op.batch_alter_table('version_signatures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_version_signatures_keyid'), ['keyid'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('version_signatures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_version_signatures_keyid'))

    op.drop_table('version_signatures')
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signing_keys_pair'))

    op.drop_table('signing_keys')
