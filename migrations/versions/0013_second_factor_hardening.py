"""second factor: failure counters and lock-outs, recovery codes; per-recipient mail throttle

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 16:00:00.000000

"""
from alembic import op
import sqlalchemy as sa

import donorhub.database


# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('totp_failures', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('totp_lockouts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('reauth_failures', sa.Integer(), server_default='0', nullable=False))

    op.create_table('recovery_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', donorhub.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', donorhub.database.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_recovery_codes_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recovery_codes')),
    sa.UniqueConstraint('user_id', 'code_hash', name=op.f('uq_recovery_codes_user_id_code_hash'))
    )
    with op.batch_alter_table('recovery_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recovery_codes_user_id'), ['user_id'], unique=False)

    op.create_table('mail_throttle',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recipient_hash', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('created_at', donorhub.database.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_throttle'))
    )
    with op.batch_alter_table('mail_throttle', schema=None) as batch_op:
        batch_op.create_index('ix_mail_throttle_recipient_kind_at', ['recipient_hash', 'kind', 'created_at'], unique=False)


def downgrade():
    with op.batch_alter_table('mail_throttle', schema=None) as batch_op:
        batch_op.drop_index('ix_mail_throttle_recipient_kind_at')
    op.drop_table('mail_throttle')

    with op.batch_alter_table('recovery_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recovery_codes_user_id'))
    op.drop_table('recovery_codes')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('reauth_failures')
        batch_op.drop_column('totp_lockouts')
        batch_op.drop_column('totp_failures')
