"""the listing's daily order and match me's random places are stored with each release, so
/sponsor and match me work in SQL

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05 09:00:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("child_releases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("list_order", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("list_day", sa.Date(), nullable=True))
        batch_op.add_column(
            sa.Column("long_wait", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("match_rank", sa.Integer(), nullable=True))
        batch_op.create_index(
            "ix_child_releases_listing", ["is_listed", "list_order"], unique=False
        )
        batch_op.create_index("ix_child_releases_list_day", ["is_listed", "list_day"], unique=False)
        batch_op.create_index("ix_child_releases_match", ["long_wait", "match_rank"], unique=False)


def downgrade():
    with op.batch_alter_table("child_releases", schema=None) as batch_op:
        batch_op.drop_index("ix_child_releases_match")
        batch_op.drop_index("ix_child_releases_list_day")
        batch_op.drop_index("ix_child_releases_listing")
        batch_op.drop_column("match_rank")
        batch_op.drop_column("long_wait")
        batch_op.drop_column("list_day")
        batch_op.drop_column("list_order")
