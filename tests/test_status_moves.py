"""Every status field moves only along its table of moves, through one check."""

from __future__ import annotations

from enum import StrEnum

import pytest

import donorhub.models  # noqa: F401  (every model, so that the mappers can be configured)
from donorhub.accounts.models import DATA_REQUEST_MOVES, DataRequest, DataRequestStatus
from donorhub.campaigns.models import CAMPAIGN_MOVES, CampaignStatus
from donorhub.database import check_move, utcnow
from donorhub.donations.models import (
    DISPUTE_MOVES,
    DONATION_MOVES,
    PLAN_MOVES,
    DisputeStatus,
    DonationStatus,
    PlanStatus,
)
from donorhub.errors import IllegalTransition
from donorhub.mail.models import OUTBOX_MOVES, OutboxMessage, OutboxStatus
from donorhub.payments.models import EVENT_MOVES, EventState
from donorhub.sponsorship.models import SPONSORSHIP_MOVES, SponsorshipStatus

TABLES: list[tuple[type[StrEnum], dict]] = [
    (DataRequestStatus, DATA_REQUEST_MOVES),
    (CampaignStatus, CAMPAIGN_MOVES),
    (DonationStatus, DONATION_MOVES),
    (PlanStatus, PLAN_MOVES),
    (DisputeStatus, DISPUTE_MOVES),
    (OutboxStatus, OUTBOX_MOVES),
    (SponsorshipStatus, SPONSORSHIP_MOVES),
    (EventState, EVENT_MOVES),
]


@pytest.mark.parametrize(("status", "moves"), TABLES, ids=[t[0].__name__ for t in TABLES])
def test_every_status_has_a_row_and_moves_only_to_statuses_of_its_own_kind(status, moves):
    assert set(moves) == set(status)
    for targets in moves.values():
        assert set(targets) <= set(status)


def test_a_move_off_the_table_raises_and_names_the_row():
    with pytest.raises(IllegalTransition, match=r"message 7: sent -> pending"):
        check_move(OUTBOX_MOVES, OutboxStatus.SENT, OutboxStatus.PENDING, "message 7")
    check_move(OUTBOX_MOVES, OutboxStatus.UNCERTAIN, OutboxStatus.PENDING, "message 7")


@pytest.mark.parametrize("status", list(OutboxStatus), ids=str)
def test_only_a_failed_or_uncertain_message_can_be_queued_again(status):
    message = OutboxMessage(id=1, status=status, attempts=3)
    if status in (OutboxStatus.FAILED, OutboxStatus.UNCERTAIN):
        message.queue_again()
        assert (message.status, message.attempts) == (OutboxStatus.PENDING, 0)
    else:
        with pytest.raises(IllegalTransition):
            message.queue_again()
        assert (message.status, message.attempts) == (status, 3)


def test_a_data_request_is_completed_once():
    data_request = DataRequest(id=1, status=DataRequestStatus.REQUESTED)
    data_request.complete(utcnow())
    assert data_request.status is DataRequestStatus.COMPLETED
    first = data_request.completed_at
    with pytest.raises(IllegalTransition):
        data_request.complete(utcnow())
    assert data_request.completed_at == first
