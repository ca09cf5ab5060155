"""donations fixes (issue 3 review): every checkout session of a gift, plan checkout expiry
as a fact, Gift Aid declarations effective only once paid and confirmed

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 11:40:00

"""
from alembic import op
import sqlalchemy as sa

import donorhub.database


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('checkout_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.String(length=255), nullable=False),
    sa.Column('donation_id', sa.Integer(), nullable=True),
    sa.Column('plan_id', sa.Integer(), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('created_at', donorhub.database.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['donation_id'], ['donations.id'], name=op.f('fk_checkout_sessions_donation_id_donations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['plan_id'], ['recurring_plans.id'], name=op.f('fk_checkout_sessions_plan_id_recurring_plans'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkout_sessions')),
    sa.UniqueConstraint('session_id', name=op.f('uq_checkout_sessions_session_id'))
    )
    with op.batch_alter_table('checkout_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checkout_sessions_donation_id'), ['donation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_checkout_sessions_plan_id'), ['plan_id'], unique=False)
    with op.batch_alter_table('recurring_plans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('checkout_expired', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('subscription_synced_event', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('gift_aid_declaration_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_recurring_plans_gift_aid_declaration_id'), ['gift_aid_declaration_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_recurring_plans_gift_aid_declaration_id_gift_aid_declarations'), 'gift_aid_declarations', ['gift_aid_declaration_id'], ['id'], ondelete='RESTRICT')
    with op.batch_alter_table('gift_aid_declarations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('effective_at', donorhub.database.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('confirmed_at', donorhub.database.UTCDateTime(timezone=True), nullable=True))
    # Until now a checkout's expiry ended a plan outright; keep those plans ended as a fact.
    op.execute("UPDATE recurring_plans SET checkout_expired = stripe_ended, stripe_ended = false "
               "WHERE stripe_subscription_id IS NULL")
    # Declarations already used for a paid gift stay in force (they were made before the
    # confirmation step existed); any other (an abandoned checkout's) never takes effect.
    op.execute("UPDATE gift_aid_declarations SET effective_at = declared_at, "
               "confirmed_at = declared_at WHERE id IN (SELECT gift_aid_declaration_id "
               "FROM donations WHERE paid_at IS NOT NULL AND gift_aid_declaration_id IS NOT NULL)")


def downgrade():
    with op.batch_alter_table('gift_aid_declarations', schema=None) as batch_op:
        batch_op.drop_column('confirmed_at')
        batch_op.drop_column('effective_at')
    with op.batch_alter_table('recurring_plans', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_recurring_plans_gift_aid_declaration_id_gift_aid_declarations'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_recurring_plans_gift_aid_declaration_id'))
        batch_op.drop_column('gift_aid_declaration_id')
        batch_op.drop_column('subscription_synced_event')
        batch_op.drop_column('checkout_expired')
    with op.batch_alter_table('checkout_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checkout_sessions_plan_id'))
        batch_op.drop_index(batch_op.f('ix_checkout_sessions_donation_id'))
    op.drop_table('checkout_sessions')
