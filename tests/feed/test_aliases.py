"""Children's aliases share no word with the charity's name, so no page or mail that names the
charity ("Safe Harbour Children's Trust") seems to name a child, and no check for an alias
matches the charity instead."""

from __future__ import annotations

from config import Config, TestingConfig
from donorhub.extensions import db
from donorhub.feed.pseudonyms import AliasPool, alias_words, name_words, usable_aliases


def test_no_alias_in_the_list_shares_a_word_with_the_configured_charity_name():
    for name in {Config.CHARITY_NAME, TestingConfig.CHARITY_NAME}:
        clashes = sorted(word for word in alias_words() if name_words(word) & name_words(name))
        assert clashes == [], (name, clashes)


def test_a_charity_named_with_alias_words_never_gets_them_drawn(app_factory):
    app = app_factory(CHARITY_NAME="Wren & Meadow Children's Trust")
    assert {"Wren", "Meadow"} <= set(alias_words())
    usable = usable_aliases(app.config["CHARITY_NAME"])
    assert "Wren" not in usable and "Meadow" not in usable
    assert len(usable) == len(alias_words()) - 2
    with app.app_context():
        pool = AliasPool()
        # Every single word, then pairs: none of them contains either word.
        drawn = [pool.draw() for _ in range(len(usable) + 200)]
        db.session.rollback()
    assert len(set(drawn)) == len(drawn)
    assert not [alias for alias in drawn if name_words(alias) & {"wren", "meadow"}]
    assert len([alias for alias in drawn if " " in alias]) == 200  # pairs once singles ran out


def test_name_words_splits_a_name_into_lower_case_words():
    assert name_words("Safe Harbour Children's Trust") == {"safe", "harbour", "children", "trust"}
    assert name_words("Wren Meadow") == {"wren", "meadow"}
