"""Verification, reset and e-mail change links name the account by its random public id:
no row id of ours and no old address is in them, in any encoding; links that carried the
row id are refused."""

from __future__ import annotations

import re

from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select

from donorhub.accounts import passwords, services
from donorhub.accounts.models import User
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from tests.helpers import PASSWORD
from tests.security.opaque_tokens import decodings, id_leaks

USER_ID = 4_821_357
OLD_ADDRESS = "reader@example.org"
NEW_ADDRESS = "reader.new@example.org"
LINK = re.compile(r"/account/(verify|reset|email/confirm)/([A-Za-z0-9._-]+)")


def mailed_links(app) -> dict[str, str]:
    """Send a verification, a reset and an e-mail change; the token of each link mailed."""
    with app.app_context():
        user = User(
            id=USER_ID,
            email=OLD_ADDRESS,
            full_name="Reader",
            password_hash=passwords.hash_password(PASSWORD),
        )
        db.session.add(user)
        db.session.flush()
        services.send_verification(user)
        services.request_password_reset(OLD_ADDRESS)
        services.request_email_change(user, NEW_ADDRESS, PASSWORD)
        db.session.commit()
        bodies = db.session.scalars(select(OutboxMessage.text_body)).all()
    links = {kind: token for body in bodies for kind, token in LINK.findall(body)}
    assert set(links) == {"verify", "reset", "email/confirm"}
    return links


def account(app) -> User:
    with app.app_context():
        user = db.session.get_one(User, USER_ID)
        db.session.expunge(user)
        return user


def test_mailed_account_links_carry_no_row_id_and_no_old_address(app):
    links = mailed_links(app)
    leaks = {kind: id_leaks(token, USER_ID) for kind, token in links.items()}
    assert leaks == {kind: [] for kind in links}
    addresses = {
        kind: [d for d in decodings(token) if OLD_ADDRESS.encode() in d]
        for kind, token in links.items()
    }
    assert addresses == {kind: [] for kind in links}


def test_the_links_still_do_their_work(app):
    links = mailed_links(app)
    client = app.test_client()
    assert client.get(f"/account/verify/{links['verify']}").status_code == 302
    assert account(app).email_verified_at is not None
    client.get(f"/account/reset/{links['reset']}")
    assert client.get("/account/reset").status_code == 200
    assert client.get(f"/account/email/confirm/{links['email/confirm']}").status_code == 302
    assert account(app).email == NEW_ADDRESS


def test_a_link_that_named_the_account_by_row_id_is_refused(app):
    mailed_links(app)
    with app.app_context():

        def old_link(purpose: str, payload: dict) -> str:
            return URLSafeTimedSerializer(
                app.config["SECRET_KEY"], salt=f"donorhub.accounts.{purpose}"
            ).dumps(payload)

        verify = old_link("verify", {"uid": USER_ID, "email": OLD_ADDRESS})
        change = old_link("change-email", {"uid": USER_ID, "old": OLD_ADDRESS, "new": NEW_ADDRESS})
    client = app.test_client()
    page = client.get(f"/account/verify/{verify}")
    assert page.status_code == 400 and "link" in page.get_data(as_text=True).lower()
    assert client.get(f"/account/email/confirm/{change}").status_code == 400
    user = account(app)
    assert user.email_verified_at is None and user.email == OLD_ADDRESS
