"""Every model, imported in one place so metadata and migrations see the whole schema."""

from donorhub.accounts.models import (  # noqa: F401
    DataRequest,
    RoleRequest,
    StaffInvitation,
    User,
    UserRole,
)
from donorhub.audit import AuditEvent  # noqa: F401
from donorhub.campaigns.models import (  # noqa: F401
    Campaign,
    CampaignDonor,
    CampaignDonorCount,
    CampaignTotal,
)
from donorhub.children.models import (  # noqa: F401
    AliasUse,
    Child,
    ChildRelease,
    ChildText,
    ChildUpdate,
    ExitNotice,
    HomeStat,
)
from donorhub.donations.models import (  # noqa: F401
    Donation,
    Donor,
    DonorConsent,
    DonorErasure,
    DonorNote,
    GiftAidClaim,
    GiftAidDeclaration,
    OfflineGift,
    PlanPaymentFailure,
    Receipt,
    ReceiptCounter,
    RecurringPlan,
    Refund,
)
from donorhub.feed.models import FeedRun  # noqa: F401
from donorhub.mail.models import OutboxMessage  # noqa: F401
from donorhub.money import ExchangeRate  # noqa: F401
from donorhub.payments.models import StripeEvent  # noqa: F401
from donorhub.sponsorship.models import (  # noqa: F401
    ConductAcceptance,
    Disclosure,
    SponsorMessage,
    Sponsorship,
    SponsorshipPlace,
    SponsorSuspension,
)
from donorhub.updates.models import (  # noqa: F401
    NotificationPreference,
    Publication,
    UpdateNotification,
)
