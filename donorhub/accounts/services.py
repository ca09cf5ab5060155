"""Account rules: registration, sign-in, verification, reset, two factors, roles.

Services take the acting user as an argument, flush but never commit, and queue mail in the
same transaction (rules of the house, DESIGN.md section 2).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from flask import current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import lazyload
from sqlalchemy.orm.attributes import set_committed_value

from donorhub import urls
from donorhub.accounts import passwords, tokens
from donorhub.accounts.codes import (
    RECOVERY_ALPHABET,
    RECOVERY_CODE_COUNT,
    RECOVERY_CODE_LENGTH,
    normalise_recovery_code,
)
from donorhub.accounts.models import (
    SECOND_PERSON_ROLES,
    DataRequest,
    DataRequestKind,
    MailThrottle,
    RecoveryCode,
    RoleRequest,
    StaffInvitation,
    StaffRole,
    User,
    UserRole,
)
from donorhub.audit import AuditEvent, record_audit
from donorhub.database import utcnow
from donorhub.errors import DomainError
from donorhub.extensions import db
from donorhub.mail.services import add_to_outbox, queue_mail, render_mail

TOTP_STEP_SECONDS = 30


class WeakPassword(DomainError):
    def __init__(self, problems: list[str]):
        super().__init__(" ".join(problems))
        self.problems = problems


class WrongPassword(DomainError):
    """The current password given does not match."""


class EmailTaken(DomainError):
    """Another account already uses that e-mail address."""


def check_password_policy(password: str, email: str | None = None) -> None:
    config = current_app.config
    problems = passwords.password_problems(
        password,
        min_length=config["PASSWORD_MIN_LENGTH"],
        max_length=config["PASSWORD_MAX_LENGTH"],
        email=email,
    )
    if problems:
        raise WeakPassword(problems)


def find_user_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == email.strip().lower()))


def greeting_name(user: User) -> str | None:
    """The name to greet an account holder by in mail, or None to greet neutrally.

    Anyone can register any address with any name, so until the address is confirmed the name
    is unverified text chosen by whoever typed it: it never goes into mail to that address.
    """
    return user.full_name if user.is_verified else None


def _secret_keys() -> list[bytes]:
    config = current_app.config
    return [
        str(key).encode()
        for key in [config["SECRET_KEY"], *(config.get("SECRET_KEY_FALLBACKS") or [])]
    ]


def recipient_hash(address: str) -> str:
    """A keyed hash of an e-mail address, for counting mail to it without storing it."""
    return hmac.new(
        _secret_keys()[0], b"mail-throttle:" + address.strip().lower().encode(), hashlib.sha256
    ).hexdigest()


#: How long a request for mail to one address counts against it (MAIL_PER_RECIPIENT_PER_HOUR).
MAIL_THROTTLE_WINDOW = timedelta(hours=1)


def recipient_mail_allowed(address: str, kind: str, now: datetime | None = None) -> bool:
    """Count one request for a `kind` of mail to `address`; whether it may still be sent.

    At most MAIL_PER_RECIPIENT_PER_HOUR requests per address and kind in any hour lead to
    mail, from however many client addresses they come. The request is counted whether or not
    an account has the address (the same statements run either way). Only a keyed hash of
    the address is stored; rows of an address never asked for again go with the
    `purge_mail_throttle` job (purge_mail_throttle below).
    """
    now = now or utcnow()
    key = recipient_hash(address)
    # This address's rows that no longer count go as it is asked for again (an index look-up).
    db.session.execute(
        MailThrottle.__table__.delete().where(
            MailThrottle.recipient_hash == key,
            MailThrottle.kind == kind,
            MailThrottle.created_at <= now - MAIL_THROTTLE_WINDOW,
        )
    )
    earlier = db.session.scalar(
        select(func.count())
        .select_from(MailThrottle)
        .where(
            MailThrottle.recipient_hash == key,
            MailThrottle.kind == kind,
            MailThrottle.created_at > now - MAIL_THROTTLE_WINDOW,
        )
    )
    db.session.add(MailThrottle(recipient_hash=key, kind=kind, created_at=now))
    db.session.flush()
    return earlier < current_app.config["MAIL_PER_RECIPIENT_PER_HOUR"]


def purge_mail_throttle(now: datetime | None = None) -> int:
    """Delete every throttle row that no longer counts (older than the window), of any
    address: those of addresses never asked for again would otherwise stay for ever."""
    cutoff = (now or utcnow()) - MAIL_THROTTLE_WINDOW
    # A DELETE gives a CursorResult, which has the row count.
    return db.session.execute(
        MailThrottle.__table__.delete().where(  # type: ignore[attr-defined]
            MailThrottle.created_at <= cutoff
        )
    ).rowcount


# Registration and verification -------------------------------------------------------------


def register_account(email: str, full_name: str, password: str) -> User | None:
    """Create a donor account and mail a verification link.

    When the address is taken, the owner is told by mail instead and nothing else changes;
    the caller shows the same page either way, so registration cannot reveal who has an account.

    :raises WeakPassword: before anything is written.
    """
    check_password_policy(password, email)
    password_hash = passwords.hash_password(password)  # both branches pay for one hash
    existing = find_user_by_email(email)
    # Counted in both branches; only the "already registered" mail is ever held back.
    allowed = recipient_mail_allowed(email, "already_registered")
    if existing is not None:
        if allowed:
            queue_mail(
                existing.email,
                "accounts/already_registered",
                subject="Someone tried to create an account with your address",
                sign_in_url=urls.external_url("accounts.sign_in"),
                reset_url=urls.external_url("accounts.forgot_password"),
            )
        return None
    user = User(email=email, full_name=full_name, password_hash=password_hash)
    db.session.add(user)
    db.session.flush()
    send_verification(user)
    return user


def send_verification(user: User) -> None:
    token = tokens.make_token(
        "verify", {"u": user.public_id, "e": tokens.address_digest(user.email)}
    )
    # No name: the address is not confirmed, so whoever registered could have typed anything.
    queue_mail(
        user.email,
        "accounts/verify",
        subject="Confirm your e-mail address",
        sensitive=True,
        verify_url=urls.external_url("accounts.verify_email", token=token),
    )


def verify_email(token: str) -> User:
    """:raises tokens.InvalidToken: the link is broken, expired or for an old address."""
    payload = tokens.read_token("verify", token, current_app.config["VERIFY_TOKEN_MAX_AGE"])
    user = user_for_link(payload)
    if (
        user is None
        or not hmac.compare_digest(tokens.address_digest(user.email), str(payload.get("e")))
        or user.is_disabled
    ):
        raise tokens.InvalidToken("verify")
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
    return user


# Signing in --------------------------------------------------------------------------------


def authenticate(email: str, password: str) -> User | None:
    """The account for these credentials, or None, taking the same time either way."""
    user = find_user_by_email(email)
    if user is None:
        passwords.burn_equal_time(password)
        return None
    if not passwords.verify_password(user.password_hash, password):
        return None
    if user.is_disabled:
        return None
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    user.last_sign_in_at = utcnow()
    return user


def load_user_from_id(user_id_with_version: str) -> User | None:
    """Flask-Login's loader: a stale session version means the session was ended."""
    user_id, _, version = user_id_with_version.partition(".")
    if not user_id.isdigit() or not version.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    if user is None or user.is_disabled or user.session_version != int(version):
        return None
    return user


# Passwords ---------------------------------------------------------------------------------


def request_password_reset(email: str) -> None:
    """Mail a reset link when the account exists; say nothing either way.

    The same work is done whether or not the account exists, so the time taken does not tell
    anyone whether the address has an account: the look-up, the per-recipient count, a token,
    both bodies rendered, and the message written to the outbox inside a savepoint. The
    savepoint is kept only for an account (within the per-recipient cap) and rolled back
    otherwise, so the statements differ only in RELEASE or ROLLBACK TO, and nothing about an
    unknown address is kept.
    """
    email = email.strip().lower()
    # Roles are not needed, and loading them would be one more query for accounts only.
    user = db.session.scalar(select(User).options(lazyload(User.roles)).where(User.email == email))
    allowed = recipient_mail_allowed(email, "reset")
    exists = user is not None and not user.is_disabled
    subject_user = (
        user
        if exists and user is not None
        else User(
            id=0,
            public_id=_NO_ACCOUNT_PUBLIC_ID,
            email=email,
            full_name="",
            password_hash=_NO_ACCOUNT_HASH,
            session_version=1,
        )
    )
    token = tokens.make_token(
        "reset", {"u": subject_user.public_id, "fp": tokens.account_fingerprint(subject_user)}
    )
    message = render_mail(
        subject_user.email,
        "accounts/reset",
        subject="Reset your password",
        sensitive=True,
        name=greeting_name(subject_user),
        reset_url=urls.external_url("accounts.reset_password", token=token),
    )
    try:
        with db.session.begin_nested():  # released on leaving the block, or rolled back
            add_to_outbox(message)
            if not (exists and allowed):
                raise _NotSent
    except _NotSent:
        pass


class _NotSent(Exception):
    """Rolls back the savepoint holding a reset message that must not go out."""


#: Stands in for a password hash when a reset is asked for an address without an account.
_NO_ACCOUNT_HASH = "$argon2id$v=19$m=65536,t=3,p=4$" + "A" * 22 + "$" + "A" * 43
#: And for its public id (the token made for it is never sent).
_NO_ACCOUNT_PUBLIC_ID = "A" * 22


def user_for_link(payload: dict) -> User | None:
    """The account an e-mailed link names (by its random public id, never its row id)."""
    public_id = payload.get("u")
    if not isinstance(public_id, str) or not public_id or public_id == _NO_ACCOUNT_PUBLIC_ID:
        return None
    return db.session.scalar(select(User).where(User.public_id == public_id))


def user_for_reset_token(token: str) -> User:
    """:raises tokens.InvalidToken: the link is broken, expired, used or outdated."""
    payload = tokens.read_token("reset", token, current_app.config["RESET_TOKEN_MAX_AGE"])
    user = user_for_link(payload)
    if user is None or user.is_disabled or payload.get("fp") != tokens.account_fingerprint(user):
        raise tokens.InvalidToken("reset")
    return user


def reset_password(token: str, new_password: str) -> User:
    user = user_for_reset_token(token)
    set_password(user, new_password)
    # Following the link proved the person reads this mailbox.
    user.email_verified_at = user.email_verified_at or utcnow()
    return user


def change_password(user: User, current_password: str, new_password: str) -> None:
    check_current_password(user, current_password)
    set_password(user, new_password)


def set_password(user: User, new_password: str) -> None:
    check_password_policy(new_password, user.email)
    user.password_hash = passwords.hash_password(new_password)
    user.password_changed_at = utcnow()
    user.end_all_sessions()
    queue_mail(
        user.email,
        "accounts/password_changed",
        subject="Your password was changed",
        name=greeting_name(user),
        reset_url=urls.external_url("accounts.forgot_password"),
    )


# E-mail address ----------------------------------------------------------------------------


def request_email_change(user: User, new_email: str, current_password: str) -> None:
    check_current_password(user, current_password)
    new_email = new_email.strip().lower()
    if new_email == user.email:
        raise DomainError("That is already your e-mail address.")
    if find_user_by_email(new_email) is not None:
        # Say nothing to the requester that they could not learn from registering; tell the
        # owner of the address instead (at most so often: see recipient_mail_allowed).
        if not recipient_mail_allowed(new_email, "already_registered"):
            return
        queue_mail(
            new_email,
            "accounts/already_registered",
            subject="Someone tried to use your address for another account",
            sign_in_url=urls.external_url("accounts.sign_in"),
            reset_url=urls.external_url("accounts.forgot_password"),
        )
        return
    token = tokens.make_token(
        "change-email",
        {"u": user.public_id, "old": tokens.address_digest(user.email), "new": new_email},
    )
    # No name to the new address: nobody there has confirmed anything yet.
    queue_mail(
        new_email,
        "accounts/confirm_new_email",
        subject="Confirm your new e-mail address",
        sensitive=True,
        confirm_url=urls.external_url("accounts.confirm_email_change", token=token),
    )
    queue_mail(
        user.email,
        "accounts/email_change_requested",
        subject="A change of e-mail address was requested",
        name=greeting_name(user),
    )


def confirm_email_change(token: str) -> User:
    payload = tokens.read_token("change-email", token, current_app.config["VERIFY_TOKEN_MAX_AGE"])
    user = user_for_link(payload)
    if (
        user is None
        or user.is_disabled
        or not hmac.compare_digest(tokens.address_digest(user.email), str(payload.get("old")))
    ):
        raise tokens.InvalidToken("change-email")
    new_email = str(payload.get("new"))
    if find_user_by_email(new_email) is not None:
        raise EmailTaken("That address is now used by another account.")
    user.email = new_email
    user.email_verified_at = utcnow()
    return user


# Account deletion --------------------------------------------------------------------------


def request_account_deletion(user: User, current_password: str) -> DataRequest:
    check_current_password(user, current_password)
    existing = db.session.scalar(
        select(DataRequest).where(
            DataRequest.user_id == user.id,
            DataRequest.kind == DataRequestKind.ERASURE,
            DataRequest.status == "requested",
        )
    )
    if existing is not None:
        return existing
    request = DataRequest(user_id=user.id, kind=DataRequestKind.ERASURE)
    user.deletion_requested_at = utcnow()
    db.session.add(request)
    db.session.flush()
    queue_mail(
        user.email,
        "accounts/deletion_requested",
        subject="We have your request to delete your account",
        name=greeting_name(user),
    )
    queue_mail(
        current_app.config["DATA_PROTECTION_EMAIL"],
        "accounts/deletion_to_staff",
        subject=f"Erasure request #{request.id}",
        request_id=request.id,
        user_id=user.id,
    )
    return request


# Staff and roles ---------------------------------------------------------------------------


def create_staff_account(
    email: str, full_name: str, password: str, role: StaffRole, actor: User | None
) -> User:
    """A verified account holding `role`; it must enrol two factors at first sign-in.

    Only the operator on the server can call this (`flask accounts create-staff`, the demo
    seed). It makes the first safeguarding officer; once an officer exists, a further one is
    requested in the staff area and approved by a second person.
    """
    if role in SECOND_PERSON_ROLES and enabled_holders(role):
        raise DomainError(
            f"There is a {role.value} already: ask an admin to give the role from the staff "
            "accounts page, where a second person approves it."
        )
    check_password_policy(password, email)
    email = email.strip().lower()
    user = find_user_by_email(email)
    if user is None:
        user = User(
            email=email,
            full_name=full_name,
            password_hash=passwords.hash_password(password),
            email_verified_at=utcnow(),
        )
        db.session.add(user)
    elif user.has_role(role):
        raise DomainError(f"That account already has the {role.value} role.")
    elif not user.is_verified:
        # Anyone can register with an address they cannot read; granting a role to that
        # account would hand staff rights to whoever chose its password.
        raise DomainError(
            "That address has an account whose e-mail address was never "
            "confirmed, so it may not be this person's. Invite them from the "
            "staff accounts page instead: they choose a password from the link."
        )
    user.roles.append(UserRole(role=role))
    db.session.flush()
    detail: dict = {"role": role.value}
    if role in SECOND_PERSON_ROLES:
        detail["officers_alerted"] = alert_role_granted(user, role, "by the operator on the server")
    record_audit(actor, "staff.role_granted", "user", user.id, detail)
    return user


def set_account_disabled(actor: User | None, user: User, disabled: bool) -> None:
    user.is_disabled = disabled
    user.end_all_sessions()
    record_audit(actor, "account.disabled" if disabled else "account.enabled", "user", user.id, {})


#: How long an invitation link works. Longer than a reset link (one hour), because a new
#: colleague may not read the mail the same day; it still works only once.
INVITATION_MAX_AGE = timedelta(hours=72)


class AlreadyStaff(DomainError):
    """The address already belongs to a staff account (which the admin's list shows)."""


class InvitationWaiting(DomainError):
    """An invitation to the address is still waiting (which the admin's list shows)."""


def _role_codes(roles: Iterable[StaffRole | str]) -> list[str]:
    return sorted({StaffRole(role).value for role in roles})


def pending_invitation(email: str, now: datetime | None = None) -> StaffInvitation | None:
    rows = db.session.scalars(
        select(StaffInvitation).where(
            StaffInvitation.email == email.strip().lower(),
            StaffInvitation.accepted_at.is_(None),
            StaffInvitation.withdrawn_at.is_(None),
        )
    )
    return next((row for row in rows if row.is_pending(now)), None)


def invite_staff(
    actor: User,
    email: str,
    full_name: str,
    roles: Iterable[StaffRole | str],
    now: datetime | None = None,
) -> StaffInvitation:
    """Invite a person to the staff: a single-use link, mailed after commit, lets them choose
    their own password; the roles are granted only then (see StaffInvitation).

    Whether the address already has a donor account makes no difference to what the admin
    sees, so the form cannot be used to learn who has an account.

    :raises AlreadyStaff: the address belongs to a staff account.
    :raises InvitationWaiting: an earlier invitation to the address has not expired yet.
    """
    email, now = email.strip().lower(), now or utcnow()
    codes = _role_codes(roles)
    if not codes:
        raise DomainError("Choose at least one role.")
    existing = find_user_by_email(email)
    if existing is not None and existing.is_staff:
        raise AlreadyStaff(
            "This address already has a staff account: change its roles from "
            "the list of staff accounts."
        )
    if pending_invitation(email, now) is not None:
        raise InvitationWaiting(
            "An invitation to this address is waiting already. Withdraw it first to send a new one."
        )
    invitation = StaffInvitation(
        email=email,
        full_name=full_name,
        roles=codes,
        invited_by_id=actor.id,
        created_at=now,
        expires_at=now + INVITATION_MAX_AGE,
    )
    db.session.add(invitation)
    db.session.flush()
    record_audit(
        actor, "staff.invited", "staff_invitation", invitation.id, {"roles": ".".join(codes)}
    )
    token = tokens.make_token("invite", {"inv": invitation.id, "email": email})
    queue_mail(
        email,
        "accounts/staff_invitation",
        sensitive=True,
        subject=f"You are invited to the staff area of {current_app.config['CHARITY_NAME']}",
        name=full_name,
        hours=int(INVITATION_MAX_AGE.total_seconds() // 3600),
        invitation_url=urls.external_url("accounts.accept_invitation", token=token),
    )
    return invitation


def invitation_for_token(token: str, now: datetime | None = None) -> StaffInvitation:
    """:raises tokens.InvalidToken: the link is broken, expired, used or withdrawn."""
    payload = tokens.read_token("invite", token, INVITATION_MAX_AGE)
    invitation = db.session.get(StaffInvitation, payload.get("inv"))
    if (
        invitation is None
        or invitation.email != payload.get("email")
        or not invitation.is_pending(now)
    ):
        raise tokens.InvalidToken("invite")
    return invitation


def accept_invitation(token: str, password: str, now: datetime | None = None) -> User:
    """Set the invited person's password and grant the invited roles. Works once.

    An account that already exists for the address (a donor, say) becomes the staff account:
    its password is replaced and its sessions end, so whoever registered it before the owner
    of the mailbox followed this link cannot keep using it.

    :raises tokens.InvalidToken: see invitation_for_token; or the account is disabled.
    :raises WeakPassword: before anything is written.
    """
    now = now or utcnow()
    invitation = invitation_for_token(token, now)
    check_password_policy(password, invitation.email)
    user = find_user_by_email(invitation.email)
    if user is None:
        user = User(
            email=invitation.email,
            full_name=invitation.full_name,
            password_hash=passwords.hash_password(password),
            password_changed_at=now,
            email_verified_at=now,
        )
        db.session.add(user)
    elif user.is_disabled:
        raise tokens.InvalidToken("invite")  # an invitation never revives a disabled account
    else:
        set_password(user, password)
        # Following the link proved the person reads this mailbox.
        user.email_verified_at = user.email_verified_at or now
    inviter = (
        db.session.get(User, invitation.invited_by_id)
        if invitation.invited_by_id is not None
        else None
    )
    now_granted = [code for code in invitation.roles if StaffRole(code) not in SECOND_PERSON_ROLES]
    for code in now_granted:
        if not user.has_role(code):
            user.roles.append(UserRole(role=StaffRole(code)))
    db.session.flush()
    for code in now_granted:
        record_audit(
            inviter,
            "staff.role_granted",
            "user",
            user.id,
            {"role": code, "invitation": invitation.id},
        )
    for code in invitation.roles:
        if code not in now_granted:  # the admin's invitation is their request for it
            request_role(inviter, user, StaffRole(code))
    invitation.accepted_at = now
    invitation.user_id = user.id
    record_audit(user, "staff.invitation_accepted", "staff_invitation", invitation.id, {})
    return user


def withdraw_invitation(actor: User, invitation: StaffInvitation) -> None:
    """The link stops working at once."""
    if not invitation.is_pending():
        raise DomainError("This invitation was accepted, withdrawn or has expired already.")
    invitation.withdrawn_at = utcnow()
    record_audit(actor, "staff.invitation_withdrawn", "staff_invitation", invitation.id, {})


@dataclass(frozen=True)
class RoleChanges:
    changed: bool  # roles granted or removed now
    requested: tuple[str, ...]  # roles that wait for a second person


def set_staff_roles(actor: User, user: User, roles: Iterable[StaffRole | str]) -> RoleChanges:
    """Give a staff account exactly `roles`; a second-person role is requested instead
    (request_role) and takes effect when someone else approves it.

    Roles are read from the database on every request, so a removed role stops working on
    the person's next click; their sessions carry on.
    """
    wanted = set(_role_codes(roles))
    if not user.is_staff:
        raise DomainError("This is not a staff account.")
    if not wanted:
        raise DomainError(
            "Choose at least one role. To end someone's access, disable the account instead."
        )
    if user.id == actor.id and StaffRole.ADMIN.value not in wanted:
        raise DomainError("You cannot remove your own admin role. Ask another admin.")
    current = set(user.staff_roles)
    requested = sorted(code for code in wanted - current if StaffRole(code) in SECOND_PERSON_ROLES)
    granted = wanted - current - set(requested)
    if not current & wanted and not granted:
        raise DomainError(
            "The safeguarding officer role takes effect only once a second person approves "
            "it, and until then this account would have no role: keep one of its present "
            "roles ticked, and remove it after the approval."
        )
    for role in [r for r in user.roles if r.role.value not in wanted]:
        user.roles.remove(role)
    for code in sorted(granted):
        user.roles.append(UserRole(role=StaffRole(code)))
    db.session.flush()
    for code in sorted(current - wanted):
        record_audit(actor, "staff.role_revoked", "user", user.id, {"role": code})
    for code in sorted(granted):
        record_audit(actor, "staff.role_granted", "user", user.id, {"role": code})
    for code in requested:
        request_role(actor, user, StaffRole(code))
    return RoleChanges(bool(granted or current - wanted), tuple(requested))


# Roles that need a second person --------------------------------------------------------


def enabled_holders(role: StaffRole) -> list[User]:
    return list(
        db.session.scalars(
            select(User)
            .join(UserRole)
            .where(UserRole.role == role, User.is_disabled.is_(False))
            .order_by(User.id)
        )
    )


def _alert_officers(template: str, subject: str, **context) -> int:
    """Mail every safeguarding officer (through the outbox); returns how many."""
    officers = enabled_holders(StaffRole.SAFEGUARDING_OFFICER)
    for officer in officers:
        queue_mail(officer.email, template, subject=subject, name=officer.full_name, **context)
    return len(officers)


def alert_role_granted(user: User, role: StaffRole, how: str) -> int:
    return _alert_officers(
        "accounts/role_granted",
        subject=f"{user.full_name} is now a safeguarding officer",
        grantee=user.full_name,
        how=how,
    )


def pending_role_requests() -> list[RoleRequest]:
    return list(
        db.session.scalars(
            select(RoleRequest).where(RoleRequest.outcome.is_(None)).order_by(RoleRequest.id)
        )
    )


def request_role(actor: User | None, user: User, role: StaffRole) -> RoleRequest:
    """Ask for `role` for `user`; every safeguarding officer is told. A request already
    waiting for the same role is returned as it is."""
    waiting = db.session.scalar(
        select(RoleRequest).where(
            RoleRequest.user_id == user.id,
            RoleRequest.role == role,
            RoleRequest.outcome.is_(None),
        )
    )
    if waiting is not None:
        return waiting
    request = RoleRequest(
        user_id=user.id, role=role, requested_by_id=actor.id if actor is not None else None
    )
    db.session.add(request)
    db.session.flush()
    alerted = _alert_officers(
        "accounts/role_requested",
        subject=f"Approval needed: {user.full_name} as a safeguarding officer",
        grantee=user.full_name,
        requester=actor.full_name if actor is not None else "Someone no longer on the staff",
        requests_url=urls.external_url("staff.role_requests"),
    )
    record_audit(
        actor,
        "staff.role_requested",
        "user",
        user.id,
        {"role": role.value, "request": request.id, "officers_alerted": alerted},
    )
    return request


def _gave_approving_role(granter_id: int, user: User) -> bool:
    """Whether `granter_id` ever gave `user` a role that may approve a role request: an admin
    who makes a second account of their own an admin must not approve through it."""
    approving = {StaffRole.ADMIN.value, StaffRole.SAFEGUARDING_OFFICER.value}
    grants = db.session.scalars(
        select(AuditEvent.detail).where(
            AuditEvent.action == "staff.role_granted",
            AuditEvent.subject_type == "user",
            AuditEvent.subject_id == user.id,
            AuditEvent.actor_id == granter_id,
        )
    )
    return any(detail.get("role") in approving for detail in grants)


def approve_role_request(actor: User, request: RoleRequest) -> None:
    """The second person's approval: the role takes effect now, and every officer is told.

    :raises DomainError: decided already; the approver is the requester, the grantee, or
        neither an admin nor a safeguarding officer; or the grantee's account is disabled.
    """
    if request.outcome is not None:
        raise DomainError("This request was approved or cancelled already.")
    if not (actor.has_role(StaffRole.ADMIN) or actor.has_role(StaffRole.SAFEGUARDING_OFFICER)):
        raise DomainError("Only another admin or a safeguarding officer can approve this.")
    if actor.id == request.user_id:
        raise DomainError("Nobody can approve a role for themselves.")
    if actor.id == request.requested_by_id:
        raise DomainError(
            "You asked for this role, so a second person must approve it: another admin or a "
            "safeguarding officer."
        )
    if request.requested_by_id is not None and _gave_approving_role(request.requested_by_id, actor):
        raise DomainError(
            "The person who asked for this gave you your admin or officer role, so a second "
            "person must be someone they did not make."
        )
    user = request.user
    if user.is_disabled:
        raise DomainError("That account is disabled: cancel the request instead.")
    _claim_role_request(actor, request, "granted")
    if not user.has_role(request.role):
        user.roles.append(UserRole(role=request.role))
    db.session.flush()
    requester = request.requested_by.full_name if request.requested_by else "someone"
    alerted = alert_role_granted(
        user, request.role, f"{requester} asked for it and {actor.full_name} approved it"
    )
    record_audit(
        actor,
        "staff.role_granted",
        "user",
        user.id,
        {
            "role": request.role.value,
            "request": request.id,
            "requested_by": request.requested_by_id or 0,
            "officers_alerted": alerted,
        },
    )


def _claim_role_request(actor: User, request: RoleRequest, outcome: str) -> None:
    """Decide the request by a conditional UPDATE, so that of two people deciding it at the
    same moment (approve and cancel, or two approvals) exactly one wins."""
    now = utcnow()
    result = db.session.execute(
        update(RoleRequest)
        .where(RoleRequest.id == request.id, RoleRequest.outcome.is_(None))
        .values(outcome=outcome, decided_by_id=actor.id, decided_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]  # an UPDATE's CursorResult
        raise DomainError("This request was approved or cancelled already.")
    set_committed_value(request, "outcome", outcome)
    set_committed_value(request, "decided_by_id", actor.id)
    set_committed_value(request, "decided_at", now)


def cancel_role_request(actor: User, request: RoleRequest) -> None:
    if request.outcome is not None:
        raise DomainError("This request was approved or cancelled already.")
    _claim_role_request(actor, request, "cancelled")
    record_audit(
        actor,
        "staff.role_request_cancelled",
        "user",
        request.user_id,
        {"role": request.role.value, "request": request.id},
    )


# Two-factor sign-in ------------------------------------------------------------------------


@dataclass(frozen=True)
class TotpEnrolment:
    secret: str
    provisioning_uri: str


def begin_totp_enrolment(user: User) -> TotpEnrolment:
    if user.totp_pending_secret is None:
        user.totp_pending_secret = pyotp.random_base32()
    uri = pyotp.TOTP(user.totp_pending_secret).provisioning_uri(
        name=user.email, issuer_name=current_app.config["TOTP_ISSUER"]
    )
    return TotpEnrolment(secret=user.totp_pending_secret, provisioning_uri=uri)


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // TOTP_STEP_SECONDS)


def _code_matches(secret: str, code: str, step: int) -> bool:
    expected = pyotp.TOTP(secret).at(step * TOTP_STEP_SECONDS)
    return pyotp.utils.strings_equal(expected, code)


def _matching_step(secret: str, code: str, now: float | None) -> int | None:
    """The step whose code `code` is: the current one or the one just before (a code read at
    the end of its 30 seconds and submitted after them; RFC 6238 5.2 allows one step of
    drift), newest first; None for any other.

    Safe with the replay guard: a step is claimed only above the last one claimed, so a code
    of the previous step fails once that step or the current one has been used."""
    step = current_step(now)
    for candidate in (step, step - 1):
        if _code_matches(secret, code, candidate):
            return candidate
    return None


def finish_totp_enrolment(user: User, code: str, now: float | None = None) -> list[str] | None:
    """Turn the second factor on when `code` matches the new secret.

    Returns the account's new recovery codes (shown once, stored only hashed), or None when
    the code is wrong.
    """
    code = "".join(code.split())
    step = (
        None
        if user.totp_pending_secret is None
        else _matching_step(user.totp_pending_secret, code, now)
    )
    if step is None:
        return None
    user.totp_secret = user.totp_pending_secret
    user.totp_pending_secret = None
    user.totp_last_step = step
    user.totp_failures = 0
    record_audit(user, "staff.totp_enrolled", "user", user.id, {})
    return new_recovery_codes(user)


def verify_totp(user: User, code: str, now: float | None = None) -> bool:
    """The current 30-second step or the one before, and never a step at or below one
    already used (no replays).

    The step is claimed by one conditional UPDATE (... WHERE totp_last_step < :step): of two
    submissions of one code racing on any database, exactly one changes the row; the other
    sees a row count of 0 and fails.
    """
    code = "".join(code.split())
    step = None if user.totp_secret is None else _matching_step(user.totp_secret, code, now)
    if step is None:
        return False
    claimed = db.session.execute(
        update(User)
        .where(User.id == user.id, or_(User.totp_last_step.is_(None), User.totp_last_step < step))
        .values(totp_last_step=step, totp_failures=0)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]  # an UPDATE gives a CursorResult
        return False
    set_committed_value(user, "totp_last_step", step)
    set_committed_value(user, "totp_failures", 0)
    return True


def _count_failure_in_a_row(user: User, counter, limit: int, at_limit: dict) -> bool:
    """Add one to the account's `counter` of failures in a row; at `limit`, reset it and apply
    `at_limit` (what ends the account's pending sign-ins or sessions). Both moves are UPDATEs
    on the row, so failures racing from many clients are all counted and exactly one of them
    reaches the limit. True for that one."""
    db.session.execute(
        update(User)
        .where(User.id == user.id)
        .values({counter: counter + 1})
        .execution_options(synchronize_session=False)
    )
    reached = (
        db.session.execute(  # type: ignore[attr-defined]  # an UPDATE's CursorResult
            update(User)
            .where(User.id == user.id, counter >= limit)
            .values({counter: 0, **at_limit})
            .execution_options(synchronize_session=False)
        ).rowcount
        == 1
    )
    db.session.refresh(user, [counter.key, *(column.key for column in at_limit)])
    return reached


class SecondFactorLocked(DomainError):
    """Too many wrong codes in a row: every pending sign-in of the account has ended."""


def record_second_factor_failure(user: User) -> None:
    """Count a wrong code (authenticator or recovery). At MFA_MAX_FAILURES in a row, end every
    pending sign-in of the account (they carry totp_lockouts) and tell the owner by mail.

    Both counters move by UPDATEs on the row, so failures racing from many clients are all
    counted and exactly one of them locks.

    :raises SecondFactorLocked: this failure locked the second factor.
    """
    limit = current_app.config["MFA_MAX_FAILURES"]
    if not _count_failure_in_a_row(
        user, User.totp_failures, limit, {User.totp_lockouts: User.totp_lockouts + 1}
    ):
        return
    record_audit(user, "staff.second_factor_locked", "user", user.id, {"failures": limit})
    queue_mail(
        user.email,
        "accounts/second_factor_locked",
        subject="Wrong sign-in codes were entered for your staff account",
        name=greeting_name(user),
        failures=limit,
        reset_url=urls.external_url("accounts.forgot_password"),
    )
    raise SecondFactorLocked(f"{limit} wrong codes in a row")


# Recovery codes ----------------------------------------------------------------------------


def recovery_code_hash(user_id: int, code: str, key: bytes | None = None) -> str:
    """HMAC-SHA256 under the app's secret key: the database alone cannot check a guess.
    The codes carry 49 random bits each, so a slow password hash adds nothing but delay."""
    key = key if key is not None else _secret_keys()[0]
    return hmac.new(key, f"recovery-code:{user_id}:{code}".encode(), hashlib.sha256).hexdigest()


def new_recovery_codes(user: User) -> list[str]:
    """Replace the account's recovery codes by RECOVERY_CODE_COUNT new ones; returns them
    (the only time they exist in clear)."""
    db.session.execute(RecoveryCode.__table__.delete().where(RecoveryCode.user_id == user.id))
    codes = [
        "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
        for _ in range(RECOVERY_CODE_COUNT)
    ]
    for code in codes:
        db.session.add(RecoveryCode(user_id=user.id, code_hash=recovery_code_hash(user.id, code)))
    db.session.flush()
    record_audit(user, "staff.recovery_codes_made", "user", user.id, {"count": RECOVERY_CODE_COUNT})
    return [f"{code[:5]}-{code[5:]}" for code in codes]


def unused_recovery_codes(user: User) -> int:
    return (
        db.session.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        )
        or 0
    )


def use_recovery_code(user: User, code: str) -> bool:
    """Accept one unused recovery code, once: the UPDATE claims it only while used_at is
    still empty, so two racing submissions of one code cannot both succeed. Tells the owner
    by mail, with how many codes are left."""
    folded = normalise_recovery_code(code)
    if folded is None:
        return False
    hashes = [recovery_code_hash(user.id, folded, key) for key in _secret_keys()]
    claimed = db.session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash.in_(hashes),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]  # an UPDATE gives a CursorResult
        return False
    db.session.execute(
        update(User)
        .where(User.id == user.id)
        .values(totp_failures=0)
        .execution_options(synchronize_session=False)
    )
    set_committed_value(user, "totp_failures", 0)
    left = unused_recovery_codes(user)
    record_audit(user, "staff.recovery_code_used", "user", user.id, {"left": left})
    queue_mail(
        user.email,
        "accounts/recovery_code_used",
        subject="A recovery code was used to sign in to your staff account",
        name=greeting_name(user),
        left=left,
        reset_url=urls.external_url("accounts.forgot_password"),
    )
    return True


def reset_second_factor(user: User, actor: User | None = None) -> None:
    """For a staff member who lost their authenticator (and their recovery codes): remove the
    authenticator and the recovery codes and end every session; the next sign-in with the
    password enrols a new authenticator. Tells the owner by mail (docs/operations.md)."""
    if not user.is_staff:
        raise DomainError("This is not a staff account.")
    user.totp_secret = None
    user.totp_pending_secret = None
    user.totp_last_step = None
    user.totp_failures = 0
    user.end_all_sessions()
    db.session.execute(RecoveryCode.__table__.delete().where(RecoveryCode.user_id == user.id))
    record_audit(actor, "staff.second_factor_reset", "user", user.id, {})
    queue_mail(
        user.email,
        "accounts/second_factor_reset",
        subject="Two-factor sign-in was reset for your staff account",
        name=greeting_name(user),
        reset_url=urls.external_url("accounts.forgot_password"),
    )


def check_second_factor(user: User, code: str, now: float | None = None) -> bool:
    """An authenticator code, or one of the account's recovery codes."""
    if normalise_recovery_code(code) is not None:
        return use_recovery_code(user, code)
    return verify_totp(user, code, now)


# Re-entering the current password ----------------------------------------------------------


class SessionsEnded(DomainError):
    """Too many wrong current passwords in a row: every session of the account has ended."""


def check_current_password(user: User, password: str) -> None:
    """For changes that need the password again (e-mail, password, deletion, recovery codes).

    A wrong password is counted on the account; at REAUTH_MAX_FAILURES in a row every session
    of the account ends (whoever holds a stolen session must then know the password anyway).
    The caller commits in both cases, so the count survives the failed request.

    :raises WrongPassword: the password is not right.
    :raises SessionsEnded: ... and it was the last try: the account's sessions have ended.
    """
    if passwords.verify_password(user.password_hash, password):
        if user.reauth_failures:
            user.reauth_failures = 0
        return
    limit = current_app.config["REAUTH_MAX_FAILURES"]
    if _count_failure_in_a_row(
        user, User.reauth_failures, limit, {User.session_version: User.session_version + 1}
    ):
        record_audit(
            user, "account.sessions_ended_wrong_password", "user", user.id, {"failures": limit}
        )
        raise SessionsEnded(f"{limit} wrong passwords in a row")
    raise WrongPassword("Your current password is not right.")
