"""`flask db upgrade` on an empty database gives exactly the models' schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from donorhub.extensions import db


def test_migrations_match_the_models(app, backend):
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    assert differences == [], f"models and migrations differ on {backend}: {differences}"


def test_audit_log_is_append_only_in_the_database(app, make_user, backend):
    from donorhub.audit import record_audit

    user = make_user()
    with app.app_context():
        from donorhub.accounts.models import User

        record_audit(db.session.get(User, user.id), "test.action", "user", user.id, {"n": 1})
        db.session.commit()
        tampering = 0
        for statement in ("UPDATE audit_events SET action = 'forged'", "DELETE FROM audit_events"):
            try:
                db.session.execute(text(statement))
                db.session.commit()
                tampering += 1
            except Exception:  # noqa: BLE001 - any refusal by the database will do
                db.session.rollback()
        assert tampering == 0
        assert db.session.execute(text("SELECT action FROM audit_events")).scalars().all() == [
            "test.action"
        ]


def test_audit_detail_refuses_personal_data(app):
    import pytest

    from donorhub.audit import record_audit

    with app.app_context():
        for detail in (
            {"email": "someone@example.org"},
            {"note": "Her name is Priya"},
            {"nested": {"a": 1}},
        ):
            with pytest.raises(ValueError):
                record_audit(None, "x.y", "user", 1, detail)
