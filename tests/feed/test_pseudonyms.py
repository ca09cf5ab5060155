"""The importer's prepared hasher gives exactly the keyed hash stored for every reference, so
rows imported before and after it still match."""

from __future__ import annotations

from donorhub.feed.pseudonyms import KeyedHasher, keyed_hash


def test_the_prepared_hasher_equals_keyed_hash_for_every_kind_and_token():
    key, partner = "a-long-random-secret-0123456789", "mumbai-safe-homes"
    hasher = KeyedHasher(key, partner)
    for kind in ("child", "update", "about_text", "update_text", "child_content"):
        for token in ("c-0000000001", "", "ünïcode \x1f separator", "x" * 600):
            assert hasher(kind, token) == keyed_hash(key, partner, kind, token)
    assert hasher("child", "c-1") != KeyedHasher(key, "another-partner")("child", "c-1")
