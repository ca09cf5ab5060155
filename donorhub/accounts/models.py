"""Accounts: every account is a donor; some also hold staff roles."""

from __future__ import annotations

import secrets
from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Enum, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from donorhub.database import TimestampMixin, check_move, utcnow
from donorhub.extensions import Model


class StaffRole(StrEnum):
    ADMIN = "admin"
    FUNDRAISER = "fundraiser"
    SAFEGUARDING_OFFICER = "safeguarding_officer"


def new_public_id() -> str:
    return secrets.token_urlsafe(16)


class User(TimestampMixin, Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Random: what e-mailed links name the account by. The row id counts up, so a link that
    #: carried it would tell whoever sees it how many accounts came before, and roughly when.
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    #: Stored lower-cased and trimmed, so look-ups and uniqueness are case-blind.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    email_verified_at: Mapped[datetime | None]
    last_sign_in_at: Mapped[datetime | None]
    is_disabled: Mapped[bool] = mapped_column(default=False)
    #: Part of every session and remember cookie; bumping it ends them all on the server.
    session_version: Mapped[int] = mapped_column(default=1)
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_pending_secret: Mapped[str | None] = mapped_column(String(64))
    #: The last TOTP time-step accepted, so a code cannot be used twice. Moved forward only by
    #: a conditional UPDATE (accounts.services.verify_totp), so two racing submissions of one
    #: code cannot both win.
    totp_last_step: Mapped[int | None]
    #: Wrong second-factor codes in a row; at MFA_MAX_FAILURES every pending sign-in ends.
    totp_failures: Mapped[int] = mapped_column(default=0, server_default="0")
    #: How many times the second factor locked; part of every pending sign-in, so raising
    #: it ends them all (the person must start again with the password).
    totp_lockouts: Mapped[int] = mapped_column(default=0, server_default="0")
    #: Wrong current passwords in a row on the account page; at REAUTH_MAX_FAILURES every
    #: session of the account ends.
    reauth_failures: Mapped[int] = mapped_column(default=0, server_default="0")
    deletion_requested_at: Mapped[datetime | None]

    roles: Mapped[list[UserRole]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )

    # Flask-Login protocol, written out so the session version is part of the id.
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return not self.is_disabled

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return f"{self.id}.{self.session_version}"

    @property
    def staff_roles(self) -> frozenset[str]:
        return frozenset(role.role.value for role in self.roles)

    @property
    def is_staff(self) -> bool:
        return bool(self.roles)

    @property
    def has_totp(self) -> bool:
        return self.totp_secret is not None

    @property
    def is_verified(self) -> bool:
        return self.email_verified_at is not None

    def has_role(self, role: StaffRole | str) -> bool:
        return str(role) in self.staff_roles

    def end_all_sessions(self) -> None:
        self.session_version += 1

    def __repr__(self) -> str:  # no e-mail: reprs end up in logs
        return f"<User {self.id}>"


class RecoveryCode(Model):
    """A one-time code a staff member can give instead of an authenticator code.

    Only a keyed hash is stored (accounts.services.recovery_code_hash); the codes themselves
    are shown once, when made.
    """

    __tablename__ = "recovery_codes"
    __table_args__ = (UniqueConstraint("user_id", "code_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Set once, by a conditional UPDATE: a code works once even when raced.
    used_at: Mapped[datetime | None]


class MailThrottle(Model):
    """One row per mail of a throttled kind asked for, keyed by a keyed hash of the address,
    so one mailbox cannot be flooded from many client addresses. Written whether or not an
    account exists, so the work is the same either way. Rows older than an hour no longer
    count; accounts.services.recipient_mail_allowed deletes them when the address comes back,
    and the hourly `purge_mail_throttle` job deletes all of them."""

    __tablename__ = "mail_throttle"
    __table_args__ = (
        Index("ix_mail_throttle_recipient_kind_at", "recipient_hash", "kind", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient_hash: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def _staff_role_type() -> Enum:
    """A staff role stored as its value in a plain string column (no database enum type)."""
    return Enum(
        StaffRole,
        native_enum=False,
        length=32,
        validate_strings=True,
        values_callable=lambda roles: [r.value for r in roles],
    )


class UserRole(Model):
    __tablename__ = "user_roles"
    __table_args__ = (UniqueConstraint("user_id", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[StaffRole] = mapped_column(_staff_role_type())
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(back_populates="roles")


#: Roles that take effect only when a second person approves the grant (docs/security.md,
#: "Two people for the safeguarding-officer role"): its holder sees children's texts unmasked
#: and decides what sponsors read.
SECOND_PERSON_ROLES = frozenset({StaffRole.SAFEGUARDING_OFFICER})


class RoleRequest(Model):
    """A grant of a second-person role, waiting for someone other than the requester and
    the grantee to approve it. Nothing is granted until then."""

    __tablename__ = "role_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[StaffRole] = mapped_column(_staff_role_type())
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None]
    #: None while waiting; "granted" or "cancelled" once decided.
    outcome: Mapped[str | None] = mapped_column(String(16))

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    requested_by: Mapped[User | None] = relationship(foreign_keys=[requested_by_id])

    def __repr__(self) -> str:
        return f"<RoleRequest {self.id}>"


class DataRequestKind(StrEnum):
    ERASURE = "erasure"
    EXPORT = "export"


class DataRequestStatus(StrEnum):
    REQUESTED = "requested"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


#: A request is carried out or withdrawn once; either is final.
DATA_REQUEST_MOVES: dict[DataRequestStatus, frozenset[DataRequestStatus]] = {
    DataRequestStatus.REQUESTED: frozenset(
        {DataRequestStatus.COMPLETED, DataRequestStatus.CANCELLED}
    ),
    DataRequestStatus.COMPLETED: frozenset(),
    DataRequestStatus.CANCELLED: frozenset(),
}


class DataRequest(Model):
    """A donor's request about their personal data, carried out by staff."""

    __tablename__ = "data_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[DataRequestKind] = mapped_column(
        Enum(
            DataRequestKind,
            native_enum=False,
            length=16,
            validate_strings=True,
            values_callable=lambda kinds: [k.value for k in kinds],
        )
    )
    status: Mapped[DataRequestStatus] = mapped_column(
        Enum(
            DataRequestStatus,
            native_enum=False,
            length=16,
            validate_strings=True,
            values_callable=lambda kinds: [k.value for k in kinds],
        ),
        default=DataRequestStatus.REQUESTED,
    )
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]

    def complete(self, now: datetime) -> None:
        check_move(
            DATA_REQUEST_MOVES, self.status, DataRequestStatus.COMPLETED, f"data request {self.id}"
        )
        self.status = DataRequestStatus.COMPLETED
        self.completed_at = now


class StaffInvitation(Model):
    """An admin's invitation to join the staff (docs/operations.md, "Staff accounts").

    The roles are granted only when the invited person follows the link and chooses a
    password. So a mistyped address gains nothing, an account that someone else registered
    with the address before is not handed staff rights, and the admin never sets or sees a
    password.
    """

    __tablename__ = "staff_invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), index=True)
    full_name: Mapped[str] = mapped_column(String(200))
    #: Role codes (StaffRole values) to grant on acceptance.
    roles: Mapped[list] = mapped_column(JSON)
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    withdrawn_at: Mapped[datetime | None]
    #: The account that accepted it (new, or one that already existed for the address).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    def is_pending(self, now: datetime | None = None) -> bool:
        return (
            self.accepted_at is None
            and self.withdrawn_at is None
            and (now or utcnow()) < self.expires_at
        )

    @property
    def status(self) -> str:
        if self.accepted_at is not None:
            return "accepted"
        if self.withdrawn_at is not None:
            return "withdrawn"
        return "waiting" if self.is_pending() else "expired"

    def __repr__(self) -> str:  # no e-mail: reprs end up in logs
        return f"<StaffInvitation {self.id}>"
