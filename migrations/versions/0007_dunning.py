"""dunning: the history of failed instalments (plan_payment_failures) for the
dunning-recovery report

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 11:45:00

"""
from alembic import op
import sqlalchemy as sa

import donorhub.database


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('plan_payment_failures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plan_id', sa.Integer(), nullable=False),
    sa.Column('stripe_invoice_id', sa.String(length=255), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount_due_minor', sa.Integer(), nullable=False),
    sa.Column('failed_at', donorhub.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('reason_code', sa.String(length=64), nullable=True),
    sa.Column('recovered_at', donorhub.database.UTCDateTime(timezone=True), nullable=True),
    sa.Column('recovered_amount_minor', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['plan_id'], ['recurring_plans.id'], name=op.f('fk_plan_payment_failures_plan_id_recurring_plans'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plan_payment_failures')),
    sa.UniqueConstraint('stripe_invoice_id', name=op.f('uq_plan_payment_failures_stripe_invoice_id'))
    )
    with op.batch_alter_table('plan_payment_failures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_plan_payment_failures_failed_at'), ['failed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_plan_payment_failures_plan_id'), ['plan_id'], unique=False)


def downgrade():
    with op.batch_alter_table('plan_payment_failures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_plan_payment_failures_plan_id'))
        batch_op.drop_index(batch_op.f('ix_plan_payment_failures_failed_at'))

    op.drop_table('plan_payment_failures')
