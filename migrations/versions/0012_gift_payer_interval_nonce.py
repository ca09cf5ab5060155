"""gifts and plans keep the payer's name, the interval paid under and the giving form's
one-time token

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 16:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('donations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('donor_name', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('frequency', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('form_nonce', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_donations_form_nonce'), ['form_nonce'])
    with op.batch_alter_table('recurring_plans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('donor_name', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('form_nonce', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('pending_frequency', sa.String(length=16),
                                      nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_recurring_plans_form_nonce'),
                                          ['form_nonce'])
    # Gifts recorded before: one-off gifts are "once"; an instalment takes its plan's
    # interval as it stands (the best we know; a plan switched before this release may
    # still show its new interval on older gifts).
    op.execute("UPDATE donations SET frequency = 'once' WHERE plan_id IS NULL")
    op.execute("UPDATE donations SET frequency = (SELECT recurring_plans.frequency FROM "
               "recurring_plans WHERE recurring_plans.id = donations.plan_id) "
               "WHERE plan_id IS NOT NULL")


def downgrade():
    with op.batch_alter_table('recurring_plans', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_recurring_plans_form_nonce'), type_='unique')
        batch_op.drop_column('pending_frequency')
        batch_op.drop_column('form_nonce')
        batch_op.drop_column('donor_name')
    with op.batch_alter_table('donations', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_donations_form_nonce'), type_='unique')
        batch_op.drop_column('form_nonce')
        batch_op.drop_column('frequency')
        batch_op.drop_column('donor_name')
