"""child releases: published on a schedule, monotone over time, open state frozen per card

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 06:00:00.000000

"""
from alembic import op
import sqlalchemy as sa

import donorhub.database


# revision identifiers, used by Alembic.
revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('child_releases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('shown_open', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('floor_level', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('interests_cap', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('region_withheld', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('first_listed_at',
                                      donorhub.database.UTCDateTime(timezone=True),
                                      nullable=True))
    # The cards shown today bound every later card of the same child.
    op.execute("""
        UPDATE child_releases SET shown_open = is_listed, floor_level = level,
               interests_cap = interests, first_listed_at = computed_at
        WHERE is_listed
    """)


def downgrade():
    with op.batch_alter_table('child_releases', schema=None) as batch_op:
        batch_op.drop_column('first_listed_at')
        batch_op.drop_column('region_withheld')
        batch_op.drop_column('interests_cap')
        batch_op.drop_column('floor_level')
        batch_op.drop_column('shown_open')
