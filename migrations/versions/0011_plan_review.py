"""plans: a checkout that charged another amount or currency is a fact that keeps the plan
from starting, and a reason for staff to look at it

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 16:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('recurring_plans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('checkout_mismatch', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('review_reason', sa.String(length=200), nullable=True))


def downgrade():
    with op.batch_alter_table('recurring_plans', schema=None) as batch_op:
        batch_op.drop_column('review_reason')
        batch_op.drop_column('checkout_mismatch')
