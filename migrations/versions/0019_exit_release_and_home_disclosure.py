"""exit notices keep the release sponsors saw; the disclosure ledger records home news

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05 06:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('exit_notices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('shown_release', sa.JSON(), nullable=True))
    with op.batch_alter_table('sponsor_disclosures', schema=None) as batch_op:
        batch_op.add_column(sa.Column('home_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('home_update_ids', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('sponsor_disclosures', schema=None) as batch_op:
        batch_op.drop_column('home_update_ids')
        batch_op.drop_column('home_hash')
    with op.batch_alter_table('exit_notices', schema=None) as batch_op:
        batch_op.drop_column('shown_release')
