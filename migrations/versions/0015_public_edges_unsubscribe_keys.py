"""notification preferences: a random key per person, which unsubscribe links carry instead
of the user id

Revision ID: 0015_public_edges
Revises: 0014
Create Date: 2026-12-05 05:30:00.000000

"""
import secrets

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0015_public_edges'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('notification_preferences', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unsubscribe_key', sa.String(length=32), nullable=True))
    # Every existing row gets its own random key; links mailed before this revision (which
    # carried the user id) stop working, and the next notification carries a new one.
    connection = op.get_bind()
    preferences = sa.table('notification_preferences', sa.column('id', sa.Integer()),
                           sa.column('unsubscribe_key', sa.String()))
    for (row_id,) in connection.execute(sa.select(preferences.c.id)).all():
        connection.execute(preferences.update().where(preferences.c.id == row_id)
                           .values(unsubscribe_key=secrets.token_urlsafe(16)))
    with op.batch_alter_table('notification_preferences', schema=None) as batch_op:
        batch_op.alter_column('unsubscribe_key', existing_type=sa.String(length=32),
                              nullable=False)
        batch_op.create_unique_constraint(
            batch_op.f('uq_notification_preferences_unsubscribe_key'), ['unsubscribe_key'])


def downgrade():
    with op.batch_alter_table('notification_preferences', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_notification_preferences_unsubscribe_key'),
                                 type_='unique')
        batch_op.drop_column('unsubscribe_key')
