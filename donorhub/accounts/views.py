"""Account pages. Views parse with a schema, call a service, render; the request's commit
point (donorhub/commit_point.py) keeps the writes of a successful answer."""

from __future__ import annotations

import json
import time

from flask import current_app, flash, g, redirect, render_template, request, session, url_for
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_user, logout_user

from donorhub.accounts import bp, services, tokens
from donorhub.accounts.models import StaffRole, User
from donorhub.accounts.schemas import (
    AuthenticatorCodeSchema,
    ChangeEmailSchema,
    ChangePasswordSchema,
    ConfirmPasswordSchema,
    EmailOnlySchema,
    NewPasswordSchema,
    RecoveryCodesSchema,
    RegisterSchema,
    SignInSchema,
    TotpSchema,
)
from donorhub.commit_point import commit_before_refusing
from donorhub.donations import data_protection
from donorhub.errors import DomainError
from donorhub.extensions import db, limiter
from donorhub.forms import load_form
from donorhub.logs import log_security_event
from donorhub.qr import qr_svg
from donorhub.security import is_safe_next, public, signed_in, staff, stamp_session

#: How long a staff member has between the password and the second factor.
PENDING_SIGN_IN_SECONDS = 300


def limit(config_key: str):
    return limiter.limit(lambda: current_app.config[config_key], methods=["POST"])


def pending_account_key() -> str:
    """Rate-limit key for the second step: the account whose password was given, wherever
    the attempts come from (the pending cookie can be handed to any number of clients)."""
    pending = session.get("pending")
    uid = pending.get("uid") if isinstance(pending, dict) else None
    return f"account:{uid}" if isinstance(uid, int) else f"address:{get_remote_address()}"


def signed_in_account_key() -> str:
    return (
        f"account:{current_user.id}"
        if current_user.is_authenticated
        else f"address:{get_remote_address()}"
    )


#: Wrong second-factor codes count against the account; a successful sign-in does not.
limit_second_factor_per_account = limiter.limit(
    lambda: current_app.config["RATELIMIT_TOTP_ACCOUNT"],
    methods=["POST"],
    key_func=pending_account_key,
    scope="second-factor-account",
    deduct_when=lambda _response: not g.get("second_factor_ok"),
)

#: Every page that asks for the current password again shares one budget per client address
#: and one per account.
limit_reauth_per_address = limiter.shared_limit(
    lambda: current_app.config["RATELIMIT_REAUTH"], scope="reauth-address", methods=["POST"]
)
limit_reauth_per_account = limiter.shared_limit(
    lambda: current_app.config["RATELIMIT_REAUTH"],
    scope="reauth-account",
    key_func=signed_in_account_key,
    methods=["POST"],
)

ANY_STAFF = tuple(StaffRole)


def next_target(default: str = "main.home") -> str:
    target = request.values.get("next")
    return target if is_safe_next(target) else url_for(default)


def begin_session(user: User, *, remember: bool, mfa: bool) -> None:
    """Start a fresh session: nothing from before sign-in carries over (session fixation)."""
    session.clear()
    login_user(user, remember=remember and not user.is_staff)
    session["mfa"] = mfa
    stamp_session()


# Registration ------------------------------------------------------------------------------


@bp.route("/register", methods=["GET", "POST"])
@public
@limit("RATELIMIT_REGISTER")
def register():
    """Create a donor account."""
    if request.method == "GET":
        return render_template("accounts/register.html", errors={}, form={})
    data, errors = load_form(RegisterSchema())
    if not errors:
        try:
            services.register_account(data.email, data.full_name, data.password)
        except services.WeakPassword as error:
            errors = {"password": error.problems}
    if errors:
        form = {k: v for k, v in request.form.items() if "password" not in k}
        return render_template("accounts/register.html", errors=errors, form=form), 422
    return render_template("accounts/check_inbox.html", reason="register")


@bp.get("/verify/<token>")
@public
def verify_email(token: str):
    """Confirm an e-mail address from the link we sent."""
    try:
        services.verify_email(token)
    except tokens.InvalidToken:
        return render_template("accounts/link_invalid.html", what="confirmation"), 400
    flash("Thank you: your e-mail address is confirmed.", "success")
    return redirect(
        url_for("accounts.settings")
        if current_user.is_authenticated
        else url_for("accounts.sign_in")
    )


@bp.post("/verify/resend")
@signed_in
@limit("RATELIMIT_RESET")
def resend_verification():
    """Send the confirmation link again."""
    if not current_user.is_verified:
        services.send_verification(current_user)
    flash("We have sent the confirmation link again.", "success")
    return redirect(url_for("accounts.settings"))


# Signing in and out ------------------------------------------------------------------------


@bp.route("/sign-in", methods=["GET", "POST"])
@public
@limit("RATELIMIT_SIGN_IN")
def sign_in():
    """Sign in with e-mail and password; staff then give a second factor."""
    if request.method == "GET":
        return render_template(
            "accounts/sign_in.html", errors={}, form={}, expired=request.args.get("expired")
        )
    data, errors = load_form(SignInSchema())
    user = services.authenticate(data["email"], data["password"]) if not errors else None
    if user is None:
        log_security_event("sign_in_failed")
        # One message for unknown address and wrong password, so neither is revealed.
        errors = errors or {"_schema": ["The e-mail address or password is not right."]}
        form = {"email": request.form.get("email", "")}
        return render_template("accounts/sign_in.html", errors=errors, form=form), 422
    if user.is_staff:
        session.clear()
        session["pending"] = {
            "uid": user.id,
            "sv": user.session_version,
            "lk": user.totp_lockouts,
            "at": int(time.time()),
            "next": request.values.get("next"),
        }
        log_security_event("sign_in_password_ok", user_id=user.id, staff=True)
        target = "accounts.two_factor" if user.has_totp else "accounts.two_factor_setup"
        return redirect(url_for(target))
    begin_session(user, remember=data["remember"], mfa=False)
    log_security_event("sign_in_succeeded", user_id=user.id)
    return redirect(next_target())


def pending_staff_user() -> User | None:
    pending = session.get("pending")
    if (
        not isinstance(pending, dict)
        or time.time() - pending.get("at", 0) > PENDING_SIGN_IN_SECONDS
    ):
        return None
    user = db.session.get(User, pending.get("uid"))
    # A lock-out (too many wrong codes) raises totp_lockouts and so ends every pending sign-in.
    if (
        user is None
        or user.is_disabled
        or user.session_version != pending.get("sv")
        or user.totp_lockouts != pending.get("lk")
    ):
        return None
    return user


def start_staff_session(user: User) -> str:
    """Sign the staff member in; where to go next (a safe `next`, or the staff dashboard)."""
    target = session.get("pending", {}).get("next")
    begin_session(user, remember=False, mfa=True)
    log_security_event("sign_in_succeeded", user_id=user.id, staff=True)
    return target if is_safe_next(target) else url_for("staff.dashboard")


def finish_staff_sign_in(user: User):
    return redirect(start_staff_session(user))


@bp.route("/two-factor", methods=["GET", "POST"])
@public
@limit("RATELIMIT_TOTP")
@limit_second_factor_per_account
def two_factor():
    """The second step of a staff sign-in: a code from the authenticator app, or a recovery
    code. MFA_MAX_FAILURES wrong codes in a row end the pending sign-in."""
    user = pending_staff_user()
    if user is None or not user.has_totp:
        session.pop("pending", None)
        flash("Please sign in again.", "info")
        return redirect(url_for("accounts.sign_in"))
    if request.method == "GET":
        return render_template("accounts/two_factor.html", errors={})
    data, errors = load_form(TotpSchema())
    if not errors and services.check_second_factor(user, data["code"]):
        g.second_factor_ok = True
        return finish_staff_sign_in(user)
    log_security_event("mfa_failed", user_id=user.id)
    if not errors:
        try:
            services.record_second_factor_failure(user)
        except services.SecondFactorLocked:
            session.pop("pending", None)
            log_security_event("mfa_locked", user_id=user.id)
            flash(
                "Too many wrong codes. To keep the account safe, sign in again from the "
                "start. We have told the account's owner by e-mail.",
                "error",
            )
            return redirect(url_for("accounts.sign_in"))
        commit_before_refusing()  # the wrong code counts towards the lock-out
    errors = errors or {
        "code": [
            "That code is not right, or it was already used. Wait for the next code and try again."
        ]
    }
    return render_template("accounts/two_factor.html", errors=errors), 422


@bp.route("/two-factor/setup", methods=["GET", "POST"])
@public
@limit("RATELIMIT_TOTP")
def two_factor_setup():
    """First staff sign-in: connect an authenticator app."""
    user = pending_staff_user()
    if user is None or user.has_totp:
        session.pop("pending", None)
        return redirect(url_for("accounts.sign_in"))
    enrolment = services.begin_totp_enrolment(user)
    commit_before_refusing()  # a wrong code shows the same secret again
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        data, errors = load_form(AuthenticatorCodeSchema())
        codes = services.finish_totp_enrolment(user, data["code"]) if not errors else None
        if codes is not None:
            target = start_staff_session(user)
            # Shown once, in this answer only: never stored in clear, never in the cookie.
            return render_template(
                "accounts/recovery_codes.html", codes=codes, continue_to=target, enrolled=True
            )
        log_security_event("mfa_failed", user_id=user.id, enrolment=True)
        errors = errors or {
            "code": [
                "That code is not right. Check the time on your phone and try the newest code."
            ]
        }
    return render_template(
        "accounts/two_factor_setup.html",
        errors=errors,
        secret=enrolment.secret,
        qr=qr_svg(enrolment.provisioning_uri),
    ), (422 if errors else 200)


@bp.post("/sign-out")
@public
def sign_out():
    """Sign out here and end every other session of this account."""
    if current_user.is_authenticated:
        user = db.session.get_one(User, current_user.id)
        user.end_all_sessions()
        log_security_event("signed_out", user_id=user.id)
    logout_user()
    session.clear()
    flash("You are signed out.", "success")
    return redirect(url_for("main.home"))


# Forgotten password ------------------------------------------------------------------------


@bp.route("/forgot-password", methods=["GET", "POST"])
@public
@limit("RATELIMIT_RESET")
def forgot_password():
    """Ask for a password reset link."""
    if request.method == "GET":
        return render_template("accounts/forgot_password.html", errors={}, form={})
    data, errors = load_form(EmailOnlySchema())
    if errors:
        return render_template(
            "accounts/forgot_password.html", errors=errors, form=request.form
        ), 422
    services.request_password_reset(data["email"])
    return render_template("accounts/check_inbox.html", reason="reset")


@bp.get("/reset/<token>")
@public
def reset_password(token: str):
    """Move the token out of the address bar, so it is not kept in history or referrers."""
    session["reset_token"] = token
    return redirect(url_for("accounts.choose_new_password"))


@bp.route("/reset", methods=["GET", "POST"])
@public
@limit("RATELIMIT_RESET")
def choose_new_password():
    """Choose a new password after following a reset link."""
    token = session.get("reset_token", "")
    try:
        services.user_for_reset_token(token)
    except tokens.InvalidToken:
        session.pop("reset_token", None)
        response = render_template("accounts/link_invalid.html", what="password reset"), 400
        return response
    if request.method == "GET":
        return render_template("accounts/reset_password.html", errors={})
    data, errors = load_form(NewPasswordSchema())
    if not errors:
        try:
            user = services.reset_password(token, data["password"])
        except services.WeakPassword as error:
            errors = {"password": error.problems}
    if errors:
        return render_template("accounts/reset_password.html", errors=errors), 422
    log_security_event("password_reset", user_id=user.id)
    logout_user()
    session.clear()
    flash("Your password is changed. Please sign in with it.", "success")
    return redirect(url_for("accounts.sign_in"))


# Staff invitations -------------------------------------------------------------------------


@bp.get("/invitation/<token>")
@public
def accept_invitation(token: str):
    """Move the token out of the address bar, as for a reset link."""
    session["invitation_token"] = token
    return redirect(url_for("accounts.choose_staff_password"))


@bp.route("/invitation", methods=["GET", "POST"])
@public
@limit("RATELIMIT_RESET")
def choose_staff_password():
    """Accept a staff invitation by choosing a password; two-factor set-up follows sign-in."""
    token = session.get("invitation_token", "")
    try:
        invitation = services.invitation_for_token(token)
    except tokens.InvalidToken:
        session.pop("invitation_token", None)
        return render_template("accounts/link_invalid.html", what="invitation"), 400
    if request.method == "GET":
        return render_template("accounts/staff_invitation.html", errors={}, invitation=invitation)
    data, errors = load_form(NewPasswordSchema())
    if not errors:
        try:
            user = services.accept_invitation(token, data["password"])
        except services.WeakPassword as error:
            errors = {"password": error.problems}
        except tokens.InvalidToken:
            session.pop("invitation_token", None)
            return render_template("accounts/link_invalid.html", what="invitation"), 400
    if errors:
        return render_template(
            "accounts/staff_invitation.html", errors=errors, invitation=invitation
        ), 422
    log_security_event("staff_invitation_accepted", user_id=user.id)
    logout_user()
    session.clear()
    flash("Your password is set. Sign in with it, then connect your authenticator app.", "success")
    return redirect(url_for("accounts.sign_in"))


@bp.after_request
def no_referrer_on_token_pages(response):
    if request.endpoint in {
        "accounts.reset_password",
        "accounts.choose_new_password",
        "accounts.verify_email",
        "accounts.confirm_email_change",
        "accounts.accept_invitation",
        "accounts.choose_staff_password",
    }:
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


# Settings ----------------------------------------------------------------------------------


def render_settings(errors: dict | None = None, status: int = 200, section: str = ""):
    return render_template("accounts/settings.html", errors=errors or {}, section=section), status


@bp.get("")
@signed_in
def settings():
    """The account page: password, e-mail address, deleting the account."""
    return render_settings()


def wrong_current_password(error: Exception, section: str):
    """Keep the failure count, and answer: the form again, or, after the last try, signed
    out everywhere."""
    commit_before_refusing()
    if isinstance(error, services.SessionsEnded):
        log_security_event("reauth_locked", user_id=current_user.id)
        logout_user()
        session.clear()
        flash(
            "Too many wrong passwords: you are signed out everywhere. Sign in again, or "
            "reset your password if you have forgotten it.",
            "error",
        )
        return redirect(url_for("accounts.sign_in"))
    log_security_event("reauth_failed", user_id=current_user.id)
    return render_settings({"current_password": [str(error)]}, 422, section)


@bp.post("/password")
@signed_in
@limit_reauth_per_address
@limit_reauth_per_account
def change_password():
    """Change the password; every other session ends."""
    data, errors = load_form(ChangePasswordSchema())
    if not errors:
        user = db.session.get_one(User, current_user.id)
        try:
            services.change_password(user, data["current_password"], data["password"])
        except services.WeakPassword as error:
            errors = {"password": error.problems}
        except (services.WrongPassword, services.SessionsEnded) as error:
            return wrong_current_password(error, "password")
    if errors:
        return render_settings(errors, 422, "password")
    log_security_event("password_changed", user_id=user.id)
    # This session carries on under the new session version; all others are now dead.
    mfa = session.get("mfa", False)
    begin_session(user, remember=False, mfa=mfa)
    flash("Your password is changed. Other devices have been signed out.", "success")
    return redirect(url_for("accounts.settings"))


@bp.post("/email")
@signed_in
@limit_reauth_per_address
@limit_reauth_per_account
def change_email():
    """Ask to change the e-mail address; it changes once the new address is confirmed."""
    data, errors = load_form(ChangeEmailSchema())
    if not errors:
        user = db.session.get_one(User, current_user.id)
        try:
            services.request_email_change(user, data["email"], data["current_password"])
        except (services.WrongPassword, services.SessionsEnded) as error:
            return wrong_current_password(error, "email")
        except DomainError as error:
            errors = {"email": [str(error)]}
    if errors:
        return render_settings(errors, 422, "email")
    flash(
        "We have sent a link to the new address. Your address changes when you follow it.",
        "success",
    )
    return redirect(url_for("accounts.settings"))


@bp.get("/email/confirm/<token>")
@public
def confirm_email_change(token: str):
    """Confirm a new e-mail address from the link we sent to it."""
    try:
        services.confirm_email_change(token)
    except (tokens.InvalidToken, services.EmailTaken):
        return render_template("accounts/link_invalid.html", what="address change"), 400
    flash("Your e-mail address is changed.", "success")
    return redirect(
        url_for("accounts.settings")
        if current_user.is_authenticated
        else url_for("accounts.sign_in")
    )


@bp.post("/delete")
@signed_in
@limit_reauth_per_address
@limit_reauth_per_account
def request_deletion():
    """Ask us to delete the account and its personal data."""
    data, errors = load_form(ConfirmPasswordSchema())
    if not errors:
        user = db.session.get_one(User, current_user.id)
        try:
            services.request_account_deletion(user, data["current_password"])
        except (services.WrongPassword, services.SessionsEnded) as error:
            return wrong_current_password(error, "delete")
    if errors:
        return render_settings(errors, 422, "delete")
    flash(
        "We have your request. We will delete your personal data within 30 days and "
        "write to you when it is done.",
        "success",
    )
    return redirect(url_for("accounts.settings"))


# Recovery codes ----------------------------------------------------------------------------


@bp.route("/recovery-codes", methods=["GET", "POST"])
@staff(*ANY_STAFF)
@limit_reauth_per_address
@limit_reauth_per_account
def recovery_codes():
    """Make a new set of recovery codes (the old ones stop working): needs the password and
    a current authenticator code."""
    user = db.session.get_one(User, current_user.id)
    errors: dict = {}
    if request.method == "POST":
        data, errors = load_form(RecoveryCodesSchema())
        if not errors:
            try:
                services.check_current_password(user, data["current_password"])
            except (services.WrongPassword, services.SessionsEnded) as error:
                commit_before_refusing()  # the wrong password counts towards signing out
                if isinstance(error, services.SessionsEnded):
                    return wrong_current_password(error, "recovery")
                log_security_event("reauth_failed", user_id=user.id)
                errors = {"current_password": [str(error)]}
        if not errors and not services.verify_totp(user, data["code"]):
            log_security_event("mfa_failed", user_id=user.id, recovery_codes=True)
            errors = {
                "code": [
                    "That code is not right, or it was already used. Wait for "
                    "the next code and try again."
                ]
            }
        if not errors:
            codes = services.new_recovery_codes(user)
            log_security_event("recovery_codes_made", user_id=user.id)
            return render_template(
                "accounts/recovery_codes.html",
                codes=codes,
                continue_to=url_for("accounts.settings"),
                enrolled=False,
            )
    return render_template(
        "accounts/recovery_codes_new.html", errors=errors, left=services.unused_recovery_codes(user)
    ), 422 if errors else 200


@bp.get("/my-data.json")
@signed_in
def my_data():
    """Download everything we hold about you, as JSON."""
    body = json.dumps(data_protection.export_for_user(current_user), indent=2, sort_keys=True)
    response = current_app.response_class(body, mimetype="application/json")
    response.headers["Content-Disposition"] = 'attachment; filename="my-donorhub-data.json"'
    response.headers["Cache-Control"] = "no-store"
    return response
