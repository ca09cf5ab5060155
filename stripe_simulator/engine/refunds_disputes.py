"""Refunds (created, listed, failed by the bank later) and disputes (opened, closed)."""

from __future__ import annotations

import copy

from stripe.params import RefundCreateParams

from .. import objects
from ..objects import Obj, format_amount, new_id
from ..params import ApiError, Params, known, page_of
from .base import Ctx, EngineBase, diff


class RefundsDisputesMixin(EngineBase):
    """Refunds and disputes on a charge."""

    def create_refund(self, ctx: Ctx, params: Params) -> Obj:
        params.check(
            known(RefundCreateParams),
            {"payment_intent", "charge", "amount", "reason", "metadata", "expand"},
        )
        charge_id, intent_id = params.str("charge"), params.str("payment_intent")
        if bool(charge_id) == bool(intent_id):
            raise ApiError.invalid(
                "You must pass exactly one of `charge` or `payment_intent`.", param="charge"
            )
        if intent_id:
            intent = self.load(intent_id, "payment_intent", "payment_intent").data
            if intent["status"] != "succeeded":
                raise ApiError.invalid(
                    f"This PaymentIntent ({intent_id}) does not have a successful charge to "
                    "refund.",
                    param="payment_intent",
                )
            charge_id = intent["latest_charge"]
        charge = self.load(charge_id, "charge", "charge").data
        if charge["status"] != "succeeded":
            raise ApiError.invalid(
                f"Charge {charge_id} did not succeed; nothing to refund.", param="charge"
            )
        if charge["disputed"]:
            raise ApiError.invalid(
                f"Charge {charge_id} has been charged back; cannot issue a refund.",
                code="charge_disputed",
                param="charge",
            )
        if charge["refunded"]:
            raise ApiError.invalid(
                f"Charge {charge_id} has already been refunded.",
                code="charge_already_refunded",
                param="charge",
            )
        remaining = charge["amount"] - charge["amount_refunded"]
        amount = params.int("amount", minimum=1)
        if amount is None:
            amount = remaining
        if amount > remaining:
            currency = charge["currency"]
            raise ApiError.invalid(
                f"Refund amount ({format_amount(amount, currency)}) is greater than unrefunded "
                f"amount on charge ({format_amount(remaining, currency)})",
                code="amount_too_large",
                param="amount",
            )
        refund = objects.refund(
            charge_obj=charge,
            amount=amount,
            reason=params.str(
                "reason", choices=("duplicate", "fraudulent", "requested_by_customer")
            ),
            metadata={k: v for k, v in (params.metadata() or {}).items() if v},
            created=ctx.now,
        )
        self.store.save(refund, parent=charge_id)
        old = copy.deepcopy(charge)
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self.store.save(charge)
        self.emit(ctx, "charge.refunded", charge, diff(old, charge))
        self.emit(ctx, "refund.created", refund)
        return self.expand(refund, params.expand())

    def fail_refund(self, ctx: Ctx, refund_id: str, reason: str) -> Obj:
        """The card's bank returned the refund (days later, after it had succeeded): the
        refund fails, the money is back with the charity, the charge's amount_refunded drops.
        Sends refund.failed, refund.updated and charge.refund.updated."""
        refund = self.load(refund_id, "refund").data
        if refund["status"] in ("failed", "canceled"):
            raise ApiError.invalid(f"Refund {refund_id} has already {refund['status']}.")
        old = copy.deepcopy(refund)
        refund["status"] = "failed"
        refund["failure_reason"] = reason
        refund["failure_balance_transaction"] = new_id("txn_")
        self.store.save(refund)
        charge = self.load(refund["charge"], "charge").data
        charge["amount_refunded"] -= refund["amount"]
        charge["refunded"] = False
        self.store.save(charge)
        changes = diff(old, refund)
        self.emit(ctx, "refund.failed", refund)
        self.emit(ctx, "refund.updated", refund, changes)
        self.emit(ctx, "charge.refund.updated", refund, changes)
        return refund

    def charge_refunds_list(self, charge_id: str) -> Obj:
        """A Charge's `refunds`, built only when asked for with expand=["refunds"]."""
        found = self.refunds_of(charge_id=charge_id)
        return {
            "object": "list",
            "data": found[:10],
            "has_more": len(found) > 10,
            "url": f"/v1/charges/{charge_id}/refunds",
        }

    def list_refunds(self, params: Params) -> Obj:
        """GET /v1/refunds filtered by payment_intent or charge, newest first, one page of
        `limit` (1 to 100, default 10) after the `starting_after` (or before the
        `ending_before`) refund, with `has_more`, as Stripe pages every list."""
        params.check(
            {
                "payment_intent",
                "charge",
                "limit",
                "starting_after",
                "ending_before",
                "created",
                "expand",
            },
            {"payment_intent", "charge", "limit", "starting_after", "ending_before", "expand"},
        )
        limit = params.int("limit", minimum=1) or 10
        if limit > 100:
            raise ApiError.invalid(
                "Invalid limit: must be less than or equal to 100", param="limit"
            )
        intent_id, charge_id = params.str("payment_intent"), params.str("charge")
        found = self.refunds_of(intent_id=intent_id, charge_id=charge_id)
        page, has_more = page_of(
            found, limit, params.str("starting_after"), params.str("ending_before"), "refund"
        )
        listing = {"object": "list", "data": page, "has_more": has_more, "url": "/v1/refunds"}
        return self.expand(listing, params.expand())

    def refunds_of(
        self, *, intent_id: str | None = None, charge_id: str | None = None
    ) -> list[Obj]:
        """A payment's or a charge's refunds, newest first."""
        found = [
            r.data
            for r in self.store.of_type("refund")
            if (not intent_id or r.data.get("payment_intent") == intent_id)
            and (not charge_id or r.data.get("charge") == charge_id)
        ]
        found.reverse()
        return found

    def open_dispute(self, ctx: Ctx, charge_id: str, reason: str, amount: int | None) -> Obj:
        charge = self.load(charge_id, "charge").data
        if charge["status"] != "succeeded":
            raise ApiError.invalid(f"Charge {charge_id} did not succeed; it cannot be disputed.")
        if charge["disputed"]:
            raise ApiError.invalid(f"Charge {charge_id} is already disputed.")
        dispute = objects.dispute(
            charge_obj=charge, amount=amount or charge["amount"], reason=reason, created=ctx.now
        )
        self.store.save(dispute, parent=charge_id)
        charge["disputed"] = True
        self.store.save(charge)
        self.emit(ctx, "charge.dispute.created", dispute)
        return dispute

    def close_dispute(self, ctx: Ctx, dispute_id: str, status: str) -> Obj:
        dispute = self.load(dispute_id, "dispute").data
        if dispute["status"] in ("won", "lost"):
            raise ApiError.invalid(f"Dispute {dispute_id} is already closed ({dispute['status']}).")
        old = copy.deepcopy(dispute)
        dispute["status"] = status
        self.store.save(dispute)
        self.emit(ctx, "charge.dispute.closed", dispute, diff(old, dispute))
        return dispute
