"""stripe events are stored first and applied by a worker: state, payload, retries

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None

PENDING = "state IN ('received', 'retrying')"


def upgrade():
    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        # Every event stored before this migration was applied in its own request.
        batch_op.add_column(
            sa.Column('state', sa.String(length=16), nullable=False, server_default='applied')
        )
        batch_op.add_column(sa.Column('payload', sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column('attempts', sa.Integer(), nullable=False, server_default='0')
        )
        batch_op.add_column(sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_error', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('failed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.alter_column('outcome', existing_type=sa.String(length=16), nullable=True)
    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        batch_op.alter_column('state', existing_type=sa.String(length=16), server_default=None)
        batch_op.alter_column('attempts', existing_type=sa.Integer(), server_default=None)
        batch_op.create_index(
            'ix_stripe_events_pending',
            ['next_attempt_at'],
            unique=False,
            postgresql_where=sa.text(PENDING),
            sqlite_where=sa.text(PENDING),
        )


def downgrade():
    # Events not applied yet would be lost by going back: refuse rather than drop them.
    pending = op.get_bind().execute(
        sa.text("SELECT count(*) FROM stripe_events WHERE state <> 'applied'")
    ).scalar()
    if pending:
        raise RuntimeError(
            f"{pending} Stripe events are not applied yet: run `flask payments apply-events "
            "--once` (and resolve dead letters) before downgrading"
        )
    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        batch_op.drop_index('ix_stripe_events_pending')
        batch_op.alter_column('outcome', existing_type=sa.String(length=16), nullable=False)
        batch_op.drop_column('failed_at')
        batch_op.drop_column('last_error')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('attempts')
        batch_op.drop_column('payload')
        batch_op.drop_column('state')
