"""refunds and disputes as facts: dispute rows, refund status with a form token, Stripe's sum

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 16:30:00.000000

"""
from alembic import op
import sqlalchemy as sa

import donorhub.database


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

DISPUTE_STATUSES = ('warning_needs_response', 'warning_under_review', 'warning_closed',
                    'needs_response', 'under_review', 'prevented', 'won', 'lost')


def upgrade():
    op.create_table('disputes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('donation_id', sa.Integer(), nullable=False),
    sa.Column('stripe_dispute_id', sa.String(length=255), nullable=False),
    sa.Column('amount_minor', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.Enum(*DISPUTE_STATUSES, name='disputestatus', native_enum=False, length=24), nullable=False),
    sa.Column('opened_at', donorhub.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('closed_at', donorhub.database.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['donation_id'], ['donations.id'], name=op.f('fk_disputes_donation_id_donations'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_disputes')),
    sa.UniqueConstraint('stripe_dispute_id', name=op.f('uq_disputes_stripe_dispute_id'))
    )
    with op.batch_alter_table('disputes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_disputes_donation_id'), ['donation_id'], unique=False)

    with op.batch_alter_table('donations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stripe_refunded_minor', sa.Integer(), server_default='0', nullable=False))

    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('request_token', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('failure_reason', sa.String(length=64), nullable=True))
        batch_op.alter_column('idempotency_key', existing_type=sa.String(length=64), nullable=True)
        batch_op.alter_column('status', existing_type=sa.String(length=16),
                              type_=sa.Enum('requested', 'pending', 'requires_action', 'succeeded', 'failed', 'canceled', 'not_sent', name='refundstatus', native_enum=False, length=16),
                              existing_nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_refunds_request_token'), ['request_token'])

    # The facts so far: Stripe's sum is what the charge events said (offline gifts have
    # their refund rows); each recorded dispute becomes a row that its next event adopts.
    op.execute("UPDATE donations SET stripe_refunded_minor = amount_refunded_minor "
               "WHERE id NOT IN (SELECT donation_id FROM offline_gifts)")
    op.execute("INSERT INTO disputes (donation_id, stripe_dispute_id, amount_minor, currency, "
               "status, opened_at) SELECT id, 'recorded-' || id, amount_minor, currency, "
               "CASE dispute_status WHEN 'open' THEN 'needs_response' ELSE dispute_status END, "
               "updated_at FROM donations WHERE dispute_status IS NOT NULL")


def downgrade():
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_refunds_request_token'), type_='unique')
        batch_op.alter_column('status', existing_type=sa.String(length=16), nullable=False)
        batch_op.alter_column('idempotency_key', existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_column('failure_reason')
        batch_op.drop_column('request_token')

    with op.batch_alter_table('donations', schema=None) as batch_op:
        batch_op.drop_column('stripe_refunded_minor')

    with op.batch_alter_table('disputes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_disputes_donation_id'))

    op.drop_table('disputes')
