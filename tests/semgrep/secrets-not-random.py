# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: secrets-not-random.
# ruleid: secrets-not-random
import random
# ruleid: secrets-not-random
from random import choice
# ok: secrets-not-random
import secrets


def alias(names):
    return secrets.choice(names), random.random(), choice(names)
