"""the listing's daily order is stored with each release, so /sponsor pages in SQL

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('child_releases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('list_order', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('list_day', sa.Date(), nullable=True))
        batch_op.create_index('ix_child_releases_listing', ['is_listed', 'list_order'], unique=False)


def downgrade():
    with op.batch_alter_table('child_releases', schema=None) as batch_op:
        batch_op.drop_index('ix_child_releases_listing')
        batch_op.drop_column('list_day')
        batch_op.drop_column('list_order')
