"""child texts: no original kept after a decision, only its keyed hash; content hashes keyed

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 06:00:00.000000

"""
import hashlib
import hmac

from alembic import op
import sqlalchemy as sa
from flask import current_app


# revision identifiers, used by Alembic.
revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

DECIDED = ('approved', 'rejected', 'withdrawn')


def keyed_hash(key, partner, kind, token):
    # As donorhub.feed.pseudonyms.keyed_hash at this revision (a migration is frozen).
    message = f"{partner}\x1f{kind}\x1f{token}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def upgrade():
    for table in ('child_texts', 'child_updates'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('original_hash', sa.String(length=64), nullable=True))
    bind = op.get_bind()
    key = current_app.config.get('FEED_PSEUDONYM_KEY') or ''
    partner = current_app.config.get('FEED_PARTNER') or ''
    has_rows = bind.execute(sa.text(
        "SELECT (SELECT COUNT(*) FROM children) + (SELECT COUNT(*) FROM child_updates)"
    )).scalar()
    if has_rows and not (key and partner):
        raise RuntimeError(
            "Set FEED_PSEUDONYM_KEY and FEED_PARTNER as the feed import uses them before "
            "this upgrade: it replaces the partner's texts by their keyed hashes."
        )
    # Hash every original, then erase those already decided: the hash proves what was
    # received and lets the importer recognise the same text sent again.
    for table, column, kind in (
        ('child_texts', 'original', 'about_text'),
        ('child_updates', 'original_text', 'update_text'),
    ):
        rows = bind.execute(sa.text(
            f"SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL"
        )).all()
        for row_id, original in rows:
            bind.execute(
                sa.text(f"UPDATE {table} SET original_hash = :hash WHERE id = :id"),
                {"hash": keyed_hash(key, partner, kind, original), "id": row_id},
            )
        bind.execute(sa.text(
            f"UPDATE {table} SET {column} = NULL WHERE status IN ('approved', 'rejected', "
            "'withdrawn')"
        ))
    # The change-detection hashes covered the texts unkeyed; key them, the way the importer
    # now computes them, so an unchanged record stays "unchanged".
    for table, kind in (('children', 'child_content'), ('child_updates', 'update_content')):
        rows = bind.execute(sa.text(f"SELECT id, content_hash FROM {table}")).all()
        for row_id, content_hash in rows:
            bind.execute(
                sa.text(f"UPDATE {table} SET content_hash = :hash WHERE id = :id"),
                {"hash": keyed_hash(key, partner, kind, content_hash), "id": row_id},
            )


def downgrade():
    # The erased originals cannot come back; the content hashes stay keyed (the next import
    # then counts every record as updated once, and re-sent texts are reviewed again).
    for table in ('child_updates', 'child_texts'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('original_hash')
