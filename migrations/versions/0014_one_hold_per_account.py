"""sponsorship holds: at most one open hold per account; holds that ran out are dated

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 16:00:00.000000

"""
from alembic import op
import sqlalchemy as sa

import donorhub.database


# revision identifiers, used by Alembic.
revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")


def upgrade():
    with op.batch_alter_table('sponsorships', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hold_timed_out_at',
                                      donorhub.database.UTCDateTime(timezone=True),
                                      nullable=True))
    # An account holding several children before this revision keeps its newest hold; the
    # others end as the hold-release job would end them (their place is freed; a payment
    # that still arrives is handled as a payment after the hold was gone).
    op.execute("""
        DELETE FROM sponsorship_places WHERE sponsorship_id IN (
            SELECT s.id FROM sponsorships s WHERE s.status = 'pending' AND s.id < (
                SELECT MAX(o.id) FROM sponsorships o
                WHERE o.user_id = s.user_id AND o.status = 'pending'))
    """)
    op.execute("""
        UPDATE sponsorships SET status = 'expired', hold_expires_at = NULL,
               ended_at = CURRENT_TIMESTAMP
        WHERE status = 'pending' AND id < (
            SELECT MAX(o.id) FROM sponsorships o
            WHERE o.user_id = sponsorships.user_id AND o.status = 'pending')
    """)
    op.create_index('uq_sponsorships_one_hold_per_user', 'sponsorships', ['user_id'],
                    unique=True, sqlite_where=PENDING, postgresql_where=PENDING)


def downgrade():
    op.drop_index('uq_sponsorships_one_hold_per_user', table_name='sponsorships',
                  sqlite_where=PENDING, postgresql_where=PENDING)
    with op.batch_alter_table('sponsorships', schema=None) as batch_op:
        batch_op.drop_column('hold_timed_out_at')
