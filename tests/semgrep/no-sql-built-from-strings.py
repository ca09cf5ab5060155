# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: no-sql-built-from-strings.
from sqlalchemy import select, text

from donorhub.accounts.models import User
from donorhub.extensions import db


def find(email, table):
    # ruleid: no-sql-built-from-strings
    db.session.execute(text(f"SELECT * FROM users WHERE email = '{email}'"))
    # ruleid: no-sql-built-from-strings
    db.session.execute(text("SELECT * FROM %s" % table))
    # ruleid: no-sql-built-from-strings
    db.session.execute(text("DELETE FROM {}".format(table)))
    # ruleid: no-sql-built-from-strings
    db.session.execute(text("SELECT * FROM " + table))
    # ok: no-sql-built-from-strings
    db.session.execute(text("SELECT * FROM users WHERE email = :email"), {"email": email})
    # ok: no-sql-built-from-strings
    return db.session.scalar(select(User).where(User.email == email))
