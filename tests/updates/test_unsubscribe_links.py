"""Unsubscribe links name their person by a random key, never by an id of ours; a link that is
not ours is refused with a page that says so, and changes nothing."""

from __future__ import annotations

from itsdangerous import URLSafeSerializer

from donorhub.accounts.models import User
from donorhub.extensions import db
from donorhub.updates import services
from donorhub.updates.models import NotificationChoice
from tests.security.opaque_tokens import id_leaks

#: A user id no random key is likely to contain by chance, in any of the spellings checked.
USER_ID = 4_821_357
REFUSED = "This link does not work"


def make_person(app, user_id: int = USER_ID, email: str = "reader@example.org") -> int:
    with app.app_context():
        db.session.add(User(id=user_id, email=email, full_name="Reader", password_hash="x"))  # noqa: S106 - never signs in
        db.session.commit()
    return user_id


def link_path(app, user_id: int) -> str:
    with app.app_context():
        url = services.unsubscribe_url(user_id)
        db.session.commit()
    return url.removeprefix("http://donorhub.test")


def choice(app, user_id: int) -> NotificationChoice:
    with app.app_context():
        return services.preference(user_id).choice


def test_an_unsubscribe_link_carries_no_id_of_ours_in_any_encoding(app):
    user_id = make_person(app)
    path = link_path(app, user_id)
    token = path.rsplit("/", 1)[1]
    with app.app_context():
        preference_id = services.preference(user_id).id
    assert id_leaks(token, user_id, preference_id) == []
    # Two people's links share nothing that counts up.
    other = make_person(app, USER_ID + 1, "other@example.org")
    other_token = link_path(app, other).rsplit("/", 1)[1]
    assert token.split(".")[0] != other_token.split(".")[0]


def test_a_forged_or_altered_link_is_refused_with_a_clear_page_and_changes_nothing(app):
    user_id = make_person(app)
    other = make_person(app, USER_ID + 1, "other@example.org")
    token = link_path(app, user_id).rsplit("/", 1)[1]
    other_token = link_path(app, other).rsplit("/", 1)[1]
    key, mac = token.split(".")

    def flip(text: str, at: int) -> str:
        return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1 :]

    with app.app_context():
        # The link this app made before: signed, but it named the user by id.
        id_link = URLSafeSerializer(app.config["SECRET_KEY"], salt="donorhub.updates.unsub").dumps(
            [user_id, 1]
        )
    forged = {
        "key altered": f"{flip(key, 3)}.{mac}",
        "MAC altered": f"{key}.{flip(mac, 5)}",
        "another person's key with this MAC": f"{other_token.split('.')[0]}.{mac}",
        "no MAC": key,
        "the id-carrying format": id_link,
        "nonsense": "not-a-link-at-all-0123456789",
        "non-ASCII MAC": f"{key}.{mac[:-1]}%C3%A9",
    }
    client = app.test_client()
    accepted = []
    for name, bad in forged.items():
        page = client.get(f"/updates/unsubscribe/{bad}")
        one_click = client.post(f"/updates/unsubscribe/{bad}")
        if page.status_code != 400 or REFUSED not in page.get_data(as_text=True):
            accepted.append((name, "GET", page.status_code))
        if one_click.status_code != 400 or REFUSED not in one_click.get_data(as_text=True):
            accepted.append((name, "POST", one_click.status_code))
    assert accepted == []
    assert choice(app, user_id) == choice(app, other) == NotificationChoice.EACH


def test_unsubscribing_works_and_an_old_link_cannot_undo_a_later_choice(app):
    user_id = make_person(app)
    path = link_path(app, user_id)
    client = app.test_client()
    page = client.get(path)
    assert page.status_code == 200 and "Stop these e-mails" in page.get_data(as_text=True)
    assert choice(app, user_id) == NotificationChoice.EACH  # a GET changes nothing
    done = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    assert "You will get no more e-mails" in done.get_data(as_text=True)
    assert choice(app, user_id) == NotificationChoice.NONE
    # The same link again (from the same mail, or an older one): still "done".
    assert client.post(path).status_code == 200
    # The person turns mail back on; the old link cannot turn it off again, a new one can.
    with app.app_context():
        services.set_preference(db.session.get_one(User, user_id), NotificationChoice.EACH)
        db.session.commit()
    assert client.post(path).status_code == 400
    assert choice(app, user_id) == NotificationChoice.EACH
    fresh = link_path(app, user_id)
    assert fresh != path
    assert client.post(fresh).status_code == 200
    assert choice(app, user_id) == NotificationChoice.NONE
