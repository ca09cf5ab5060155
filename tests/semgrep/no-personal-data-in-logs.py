# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: no-personal-data-in-logs.
import logging

from donorhub.logs import log_security_event

log = logging.getLogger(__name__)


def sign_in(user, password, token, donor):
    # ruleid: no-personal-data-in-logs
    log.info("signed in %s", user.email)
    # ruleid: no-personal-data-in-logs
    log.warning(f"bad password {password}")
    # ruleid: no-personal-data-in-logs
    log.info("reset", extra={"who": token})
    # ruleid: no-personal-data-in-logs
    log.error("gift failed", extra={"donor": donor.full_name})
    # ruleid: no-personal-data-in-logs
    log_security_event("sign_in_failed", who=user.email)
    # ruleid: no-personal-data-in-logs
    logging.info("totp %s", user.totp_secret)
    # ok: no-personal-data-in-logs
    log.info("signed in", extra={"user_id": user.id})
    # ok: no-personal-data-in-logs
    log.info("password reset requested", extra={"user_id": user.id})
    # ok: no-personal-data-in-logs
    log_security_event("sign_in_succeeded", user_id=user.id)
    # ok: no-personal-data-in-logs
    log.info("verified", extra={"verified": user.email_verified_at is not None})
    # ok: no-personal-data-in-logs
    log.warning("checkout not created", extra={"kind": donor.kind})
