# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: no-personal-data-keys-in-log-extra.
import logging

from donorhub.logs import log_security_event

log = logging.getLogger(__name__)


def register(address, value, user):
    # ruleid: no-personal-data-keys-in-log-extra
    log.info("registered", extra={"email": value})
    # ruleid: no-personal-data-keys-in-log-extra
    log.info("registered", extra={"user_id": user.id, "donor_name": value})
    # ruleid: no-personal-data-keys-in-log-extra
    log_security_event("registered", email=value)
    # ok: no-personal-data-keys-in-log-extra
    log.info("registered", extra={"user_id": user.id, "token_length": 32})
    # ok: no-personal-data-keys-in-log-extra
    log_security_event("registered", user_id=user.id, staff=True)
