"""random ids for e-mailed links: a public id per account and per Gift Aid declaration and
an unsubscribe key per notification preference, which links carry instead of row ids

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05 05:30:00.000000

"""
import secrets

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

#: (table, column): each row gets its own 128 random bits, URL-safe.
RANDOM_COLUMNS = (
    ('users', 'public_id'),
    ('gift_aid_declarations', 'public_id'),
    ('notification_preferences', 'unsubscribe_key'),
)


def upgrade():
    connection = op.get_bind()
    for table_name, column in RANDOM_COLUMNS:
        with op.batch_alter_table(table_name, schema=None) as batch_op:
            batch_op.add_column(sa.Column(column, sa.String(length=32), nullable=True))
        table = sa.table(table_name, sa.column('id', sa.Integer()), sa.column(column, sa.String()))
        for (row_id,) in connection.execute(sa.select(table.c.id)).all():
            connection.execute(table.update().where(table.c.id == row_id)
                               .values({column: secrets.token_urlsafe(16)}))
        with op.batch_alter_table(table_name, schema=None) as batch_op:
            batch_op.alter_column(column, existing_type=sa.String(length=32), nullable=False)
            batch_op.create_unique_constraint(batch_op.f(f'uq_{table_name}_{column}'), [column])
    # Links mailed before this revision named the account by its row id. Unsubscribe,
    # verification, reset and e-mail change links made then stop working (the pages say so
    # and offer a new one); plan manage and Gift Aid confirmation links keep working until
    # they expire (see donorhub/donations/plans.py and giftaid.py).


def downgrade():
    for table_name, column in reversed(RANDOM_COLUMNS):
        with op.batch_alter_table(table_name, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f'uq_{table_name}_{column}'), type_='unique')
            batch_op.drop_column(column)
