"""staff invitations: an admin invites a person to the staff; roles are granted on acceptance

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 19:00:00.000000

"""
from alembic import op
import sqlalchemy as sa

import donorhub.database


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('staff_invitations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('full_name', sa.String(length=200), nullable=False),
    sa.Column('roles', sa.JSON(), nullable=False),
    sa.Column('invited_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', donorhub.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', donorhub.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('accepted_at', donorhub.database.UTCDateTime(timezone=True), nullable=True),
    sa.Column('withdrawn_at', donorhub.database.UTCDateTime(timezone=True), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['invited_by_id'], ['users.id'], name=op.f('fk_staff_invitations_invited_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_staff_invitations_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_invitations'))
    )
    with op.batch_alter_table('staff_invitations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_invitations_email'), ['email'], unique=False)


def downgrade():
    with op.batch_alter_table('staff_invitations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_invitations_email'))

    op.drop_table('staff_invitations')
