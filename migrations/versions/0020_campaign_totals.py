"""campaign totals kept by the database: per-currency sums, per-donor gift counts and the
number of donors, moved by triggers on donations in the statement that changes a gift, and
filled here from the gifts already recorded

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 09:00:00.000000

What counts (docs/campaigns.md, donorhub/donations/models.py COUNTED_STATUSES and
net_gift_expression): a gift linked to a campaign, with status paid, partially_refunded or
refunded, whose net = amount - refunded - fee cover is above 0. Change both together.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

COUNTED = "('paid', 'partially_refunded', 'refunded')"


def _counts(row):
    return (f"{row}.campaign_id IS NOT NULL AND {row}.status IN {COUNTED} AND "
            f"{row}.amount_minor - {row}.amount_refunded_minor - {row}.fee_cover_minor > 0")


def _net(row):
    return f"{row}.amount_minor - {row}.amount_refunded_minor - {row}.fee_cover_minor"


#: The columns whose change can change what a gift counts for.
COUNTED_COLUMNS = ("status, amount_minor, amount_refunded_minor, fee_cover_minor, currency, "
                   "campaign_id, donor_id")

POSTGRESQL = [
    # Add (sign 1) or take away (sign -1) one gift: its money in its currency, one gift of
    # its donor, and one donor when that donor's first gift starts (last gift stops) counting.
    """
    CREATE FUNCTION campaign_totals_add(p_campaign integer, p_currency varchar, p_donor integer,
                                        p_net bigint, p_sign integer) RETURNS void
    LANGUAGE plpgsql AS $$
    DECLARE
        donor_gifts integer;
    BEGIN
        INSERT INTO campaign_totals AS t (campaign_id, currency, raised_minor, gifts)
        VALUES (p_campaign, p_currency, p_sign * p_net, p_sign)
        ON CONFLICT (campaign_id, currency) DO UPDATE
            SET raised_minor = t.raised_minor + EXCLUDED.raised_minor,
                gifts = t.gifts + EXCLUDED.gifts;
        INSERT INTO campaign_donors AS d (campaign_id, donor_id, gifts)
        VALUES (p_campaign, p_donor, p_sign)
        ON CONFLICT (campaign_id, donor_id) DO UPDATE SET gifts = d.gifts + EXCLUDED.gifts
        RETURNING d.gifts INTO donor_gifts;
        IF (p_sign = 1 AND donor_gifts = 1) OR (p_sign = -1 AND donor_gifts = 0) THEN
            INSERT INTO campaign_donor_counts AS c (campaign_id, donors)
            VALUES (p_campaign, p_sign)
            ON CONFLICT (campaign_id) DO UPDATE SET donors = c.donors + EXCLUDED.donors;
        END IF;
    END $$
    """,
    f"""
    CREATE FUNCTION campaign_totals_follow_gift() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        old_counts boolean := TG_OP <> 'INSERT' AND {_counts('OLD')};
        new_counts boolean := TG_OP <> 'DELETE' AND {_counts('NEW')};
    BEGIN
        IF old_counts AND new_counts AND OLD.campaign_id = NEW.campaign_id
           AND OLD.currency = NEW.currency AND OLD.donor_id = NEW.donor_id THEN
            IF {_net('NEW')} <> {_net('OLD')} THEN
                UPDATE campaign_totals
                SET raised_minor = raised_minor + ({_net('NEW')}) - ({_net('OLD')})
                WHERE campaign_id = NEW.campaign_id AND currency = NEW.currency;
            END IF;
            RETURN NULL;
        END IF;
        IF old_counts THEN
            PERFORM campaign_totals_add(OLD.campaign_id, OLD.currency, OLD.donor_id,
                                        {_net('OLD')}, -1);
        END IF;
        IF new_counts THEN
            PERFORM campaign_totals_add(NEW.campaign_id, NEW.currency, NEW.donor_id,
                                        {_net('NEW')}, 1);
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER donations_campaign_totals_insert AFTER INSERT ON donations
    FOR EACH ROW WHEN (NEW.campaign_id IS NOT NULL)
    EXECUTE FUNCTION campaign_totals_follow_gift()
    """,
    f"""
    CREATE TRIGGER donations_campaign_totals_update AFTER UPDATE OF {COUNTED_COLUMNS}
    ON donations
    FOR EACH ROW WHEN (OLD.campaign_id IS NOT NULL OR NEW.campaign_id IS NOT NULL)
    EXECUTE FUNCTION campaign_totals_follow_gift()
    """,
    """
    CREATE TRIGGER donations_campaign_totals_delete AFTER DELETE ON donations
    FOR EACH ROW WHEN (OLD.campaign_id IS NOT NULL)
    EXECUTE FUNCTION campaign_totals_follow_gift()
    """,
]


def _sqlite_add(row, sign):
    """SQLite: the statements of one gift added (sign 1) or taken away (-1)."""
    return f"""
        INSERT INTO campaign_totals (campaign_id, currency, raised_minor, gifts)
        VALUES ({row}.campaign_id, {row}.currency, {sign} * ({_net(row)}), {sign})
        ON CONFLICT (campaign_id, currency) DO UPDATE
            SET raised_minor = raised_minor + excluded.raised_minor,
                gifts = gifts + excluded.gifts;
        INSERT INTO campaign_donors (campaign_id, donor_id, gifts)
        VALUES ({row}.campaign_id, {row}.donor_id, {sign})
        ON CONFLICT (campaign_id, donor_id) DO UPDATE SET gifts = gifts + excluded.gifts;
        INSERT INTO campaign_donor_counts (campaign_id, donors)
        SELECT {row}.campaign_id, {sign} WHERE (
            SELECT gifts FROM campaign_donors
            WHERE campaign_id = {row}.campaign_id AND donor_id = {row}.donor_id
        ) = {1 if sign == 1 else 0}
        ON CONFLICT (campaign_id) DO UPDATE SET donors = donors + excluded.donors;
    """


# SQLite runs a statement's AFTER triggers one after another; taking the old row away and
# adding the new one are each right alone, so their order does not matter.
SQLITE = [
    f"""
    CREATE TRIGGER donations_campaign_totals_insert AFTER INSERT ON donations
    WHEN {_counts('NEW')}
    BEGIN {_sqlite_add('NEW', 1)} END
    """,
    f"""
    CREATE TRIGGER donations_campaign_totals_update_old AFTER UPDATE OF {COUNTED_COLUMNS}
    ON donations WHEN {_counts('OLD')}
    BEGIN {_sqlite_add('OLD', -1)} END
    """,
    f"""
    CREATE TRIGGER donations_campaign_totals_update_new AFTER UPDATE OF {COUNTED_COLUMNS}
    ON donations WHEN {_counts('NEW')}
    BEGIN {_sqlite_add('NEW', 1)} END
    """,
    f"""
    CREATE TRIGGER donations_campaign_totals_delete AFTER DELETE ON donations
    WHEN {_counts('OLD')}
    BEGIN {_sqlite_add('OLD', -1)} END
    """,
]

BACKFILL = [
    f"""
    INSERT INTO campaign_totals (campaign_id, currency, raised_minor, gifts)
    SELECT d.campaign_id, d.currency, SUM({_net('d')}), COUNT(*)
    FROM donations d WHERE {_counts('d')}
    GROUP BY d.campaign_id, d.currency
    """,
    f"""
    INSERT INTO campaign_donors (campaign_id, donor_id, gifts)
    SELECT d.campaign_id, d.donor_id, COUNT(*)
    FROM donations d WHERE {_counts('d')}
    GROUP BY d.campaign_id, d.donor_id
    """,
    """
    INSERT INTO campaign_donor_counts (campaign_id, donors)
    SELECT campaign_id, COUNT(*) FROM campaign_donors GROUP BY campaign_id
    """,
]


def upgrade():
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:  # no gift changes between the backfill and the triggers taking over
        op.execute("LOCK TABLE donations IN SHARE ROW EXCLUSIVE MODE")
    op.create_table('campaign_totals',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('raised_minor', sa.BigInteger(), nullable=False),
    sa.Column('gifts', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_totals_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', 'currency', name=op.f('pk_campaign_totals'))
    )
    op.create_table('campaign_donors',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('donor_id', sa.Integer(), nullable=False),
    sa.Column('gifts', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_donors_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['donor_id'], ['donors.id'], name=op.f('fk_campaign_donors_donor_id_donors'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', 'donor_id', name=op.f('pk_campaign_donors'))
    )
    op.create_table('campaign_donor_counts',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('donors', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_donor_counts_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', name=op.f('pk_campaign_donor_counts'))
    )
    for statement in BACKFILL:
        op.execute(statement)
    for statement in POSTGRESQL if postgresql else SQLITE:
        op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for action in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS donations_campaign_totals_{action} ON donations")
        op.execute("DROP FUNCTION IF EXISTS campaign_totals_follow_gift()")
        op.execute("DROP FUNCTION IF EXISTS campaign_totals_add(integer, varchar, integer, bigint, integer)")
    else:
        for name in ("insert", "update_old", "update_new", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS donations_campaign_totals_{name}")
    op.drop_table('campaign_donor_counts')
    op.drop_table('campaign_donors')
    op.drop_table('campaign_totals')
