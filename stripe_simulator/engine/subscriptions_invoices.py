"""Subscriptions and their invoices: the first invoice at checkout, renewals, retries,
pauses, price and interval changes, cancellation, and the invoice payments list."""

from __future__ import annotations

import copy

from stripe.params import (
    InvoicePaymentListParams,
    SubscriptionCancelParams,
    SubscriptionUpdateParams,
)

from .. import objects
from ..objects import Obj, format_amount
from ..params import ApiError, Params, known, merge_metadata
from .base import Ctx, EngineBase, add_interval, diff, interval_text


class SubscriptionsInvoicesMixin(EngineBase):
    """Subscriptions, their invoices and the invoice payments."""

    def _start_subscription(
        self, ctx: Ctx, session: Obj, private: Obj, customer: Obj, card: Obj
    ) -> tuple[Obj, Obj, Obj, Obj]:
        line = private["line_items"][0]
        price_obj = self.load(line["price"]["id"], "price").data
        data = private.get("subscription_data") or {}
        period = (
            ctx.now,
            add_interval(
                ctx.now,
                price_obj["recurring"]["interval"],
                price_obj["recurring"]["interval_count"],
            ),
        )
        sub = objects.subscription(
            customer_id=customer["id"],
            price_obj=price_obj,
            quantity=line["quantity"],
            metadata=dict(data.get("metadata") or {}),
            description=data.get("description"),
            period=period,
            created=ctx.now,
        )
        sub["default_payment_method"] = card["payment_method"]
        invoice = self._new_invoice(ctx, sub, "subscription_create", period, (ctx.now, ctx.now))
        self._finalize_invoice(ctx, invoice)
        intent, charge = self._pay_invoice(
            ctx, invoice, card, "succeed", description="Subscription creation"
        )
        if charge is None:  # a "succeed" attempt always charges the card
            raise RuntimeError(f"invoice {invoice['id']} was paid without a charge")
        sub["latest_invoice"] = invoice["id"]
        self.store.save(sub, private={"anchor": period[0], "cycle": 0})
        return sub, invoice, intent, charge

    # -- invoices --

    def _new_invoice(
        self,
        ctx: Ctx,
        sub: Obj,
        billing_reason: str,
        line_period: tuple[int, int],
        invoice_period: tuple[int, int],
    ) -> Obj:
        customer = self.load(sub["customer"], "customer")
        item = sub["items"]["data"][0]
        price_obj = item["price"]
        product_name = self.load(price_obj["product"], "product").data["name"]
        description = (
            f"{item['quantity']} × {product_name} (at "
            f"{format_amount(price_obj['unit_amount'], price_obj['currency'])} / "
            f"{interval_text(price_obj['recurring'])})"
        )
        invoice = objects.invoice(
            sub=sub,
            customer_obj=customer.data,
            billing_reason=billing_reason,
            line_period=line_period,
            invoice_period=invoice_period,
            line_description=description,
            hosted_url_base=ctx.base_url,
            created=ctx.now,
        )
        # Drafts have no number or hosted page yet; finalizing gives them both.
        invoice.update(status="draft", number=None, hosted_invoice_url=None)
        invoice["status_transitions"]["finalized_at"] = None
        customer.data["next_invoice_sequence"] += 1
        self.store.save(customer.data)
        self.store.save(
            invoice, private={"customer_sequence": customer.data["next_invoice_sequence"] - 1}
        )
        return invoice

    def _finalize_invoice(self, ctx: Ctx, invoice: Obj) -> None:
        stored = self.load(invoice["id"], "invoice")
        customer = self.load(invoice["customer"], "customer").data
        invoice.update(
            status="open",
            number=f"{customer['invoice_prefix']}-{stored.private['customer_sequence']:04d}",
            hosted_invoice_url=f"{ctx.base_url}/invoices/{invoice['id']}",
        )
        invoice["status_transitions"]["finalized_at"] = ctx.now
        self.store.save(invoice)

    def _pay_invoice(
        self, ctx: Ctx, invoice: Obj, card: Obj, outcome: str, description: str
    ) -> tuple[Obj, Obj | None]:
        """Attempt to collect ``invoice``; saves everything and returns (intent, charge)."""
        stored = self.load(invoice["id"], "invoice")
        customer = self.load(invoice["customer"], "customer").data
        intent_id = stored.private.get("payment_intent")
        if intent_id:  # Stripe retries an invoice on the same PaymentIntent
            intent = self.load(intent_id, "payment_intent").data
        else:
            intent = objects.payment_intent(
                amount=invoice["amount_due"],
                currency=invoice["currency"],
                customer_id=invoice["customer"],
                description=description,
                metadata={},
                receipt_email=None,
                created=ctx.now,
            )
            self.store.save(intent)
            payment = objects.invoice_payment(
                invoice_obj=invoice, payment_intent_id=intent["id"], created=ctx.now
            )
            self.store.save(payment, parent=invoice["id"])
            stored.private.update(payment_intent=intent["id"], invoice_payment=payment["id"])
        invoice.update(attempted=True, attempt_count=invoice["attempt_count"] + 1)
        payer = {"email": customer.get("email"), "name": customer.get("name")}
        charge = None
        if outcome == "action_required":
            intent.update(
                status="requires_action",
                payment_method=card["payment_method"],
                next_action={
                    "type": "use_stripe_sdk",
                    "use_stripe_sdk": {
                        "type": "three_d_secure_redirect",
                        "stripe_js": invoice["hosted_invoice_url"],
                    },
                },
            )
            self.store.save(intent)
            invoice["next_payment_attempt"] = None
        elif outcome == "succeed":
            charge = self._charge(ctx, intent, card, payer)
            invoice.update(
                status="paid",
                amount_paid=invoice["amount_due"],
                amount_remaining=0,
                next_payment_attempt=None,
            )
            invoice["status_transitions"]["paid_at"] = ctx.now
            payment = self.load(stored.private["invoice_payment"], "invoice_payment").data
            payment.update(status="paid", amount_paid=invoice["amount_due"])
            payment["status_transitions"]["paid_at"] = ctx.now
            self.store.save(payment)
        else:
            charge = self._charge(ctx, intent, card, payer, failure=objects.decline(outcome))
            # Smart Retries would try again in a few days; the control endpoint stands in.
            invoice["next_payment_attempt"] = ctx.now + 3 * 86400
        self.store.save(invoice, private=stored.private)
        return intent, charge

    def _invoice_payment_events(
        self, ctx: Ctx, invoice: Obj, intent: Obj, charge: Obj | None, outcome: str
    ) -> None:
        """The events of one attempt; ``charge`` is None only when action is required."""
        if outcome == "action_required":
            self.emit(ctx, "payment_intent.requires_action", intent)
            self.emit(ctx, "invoice.payment_action_required", invoice)
        elif charge is None:
            raise RuntimeError(f"invoice {invoice['id']}: a {outcome!r} attempt without a charge")
        elif outcome == "succeed":
            self.emit(ctx, "charge.succeeded", charge)
            self.emit(ctx, "payment_intent.succeeded", intent)
            self.emit(ctx, "invoice.paid", invoice)
            self.emit(ctx, "invoice.payment_succeeded", invoice)
        else:
            self.emit(ctx, "charge.failed", charge)
            self.emit(ctx, "payment_intent.payment_failed", intent)
            self.emit(ctx, "invoice.payment_failed", invoice)

    def invoice_payments_list(self, invoice_id: str) -> Obj:
        payments = [p.data for p in self.store.children(invoice_id, "invoice_payment")]
        return {
            "object": "list",
            "data": payments,
            "has_more": False,
            "url": f"/v1/invoice_payments?invoice={invoice_id}",
        }

    def list_invoice_payments(self, params: Params) -> Obj:
        params.check(known(InvoicePaymentListParams), {"invoice", "payment", "expand", "limit"})
        params.int("limit", minimum=1)
        invoice_id = params.str("invoice")
        payment = params.sub("payment")
        intent_id = None
        if payment:
            payment.check({"payment_intent", "payment_record", "type"}, {"payment_intent", "type"})
            payment.str("type", choices=("payment_intent",))
            intent_id = payment.str("payment_intent")
        if not invoice_id and not intent_id:
            raise ApiError.invalid(
                "The Stripe simulator needs `invoice` or "
                "`payment[payment_intent]` to list invoice payments."
            )
        if invoice_id:
            listing = self.invoice_payments_list(invoice_id)
        else:
            found = [
                p.data
                for p in self.store.of_type("invoice_payment")
                if p.data["payment"].get("payment_intent") == intent_id
            ]
            listing = {
                "object": "list",
                "data": found,
                "has_more": False,
                "url": "/v1/invoice_payments",
            }
        if intent_id:
            listing["data"] = [
                p for p in listing["data"] if p["payment"].get("payment_intent") == intent_id
            ]
        return self.expand(listing, params.expand())

    def retry_invoice(self, ctx: Ctx, invoice_id: str, outcome: str) -> Obj:
        """Control: Stripe's next automatic attempt on an open invoice."""
        invoice = self.load(invoice_id, "invoice").data
        if invoice["status"] != "open":
            raise ApiError.invalid(f"Invoice {invoice_id} is {invoice['status']}, not open.")
        sub_id = invoice["parent"]["subscription_details"]["subscription"]
        sub = self.load(sub_id, "subscription").data
        card = self._card_for(sub) if outcome == "auto" else self._new_card("visa_4242")
        if outcome == "auto":
            outcome = card["behaviour"]
        intent, charge = self._pay_invoice(
            ctx, invoice, card, outcome, description="Subscription update"
        )
        self._invoice_payment_events(ctx, invoice, intent, charge, outcome)
        if (
            outcome == "succeed"
            and sub["status"] == "past_due"
            and sub["latest_invoice"] == invoice_id
        ):
            old = copy.deepcopy(sub)
            sub["status"] = "active"
            self.store.save(sub)
            self.emit(ctx, "customer.subscription.updated", sub, diff(old, sub))
        return {"invoice": invoice, "subscription": sub}

    # -- subscriptions --

    def renew(self, ctx: Ctx, sub_id: str, outcome: str) -> Obj:
        """Control: the subscription reaches the end of its period (``outcome`` may force)."""
        stored = self.load(sub_id, "subscription")
        sub, private = stored.data, stored.private
        if sub["status"] == "canceled":
            raise ApiError.invalid(f"Subscription {sub_id} is canceled; it does not renew.")
        old = copy.deepcopy(sub)
        item = sub["items"]["data"][0]
        if sub["cancel_at_period_end"] or (
            sub["cancel_at"] and sub["cancel_at"] <= item["current_period_end"]
        ):
            sub.update(
                status="canceled", canceled_at=sub["canceled_at"] or ctx.now, ended_at=ctx.now
            )
            self.store.save(sub)
            self.emit(ctx, "customer.subscription.deleted", sub)
            return {"subscription": sub, "invoice": None}
        recurring = item["price"]["recurring"]
        private["cycle"] += 1
        old_period = (item["current_period_start"], item["current_period_end"])
        new_period = (
            old_period[1],
            add_interval(
                private["anchor"],
                recurring["interval"],
                recurring["interval_count"] * (private["cycle"] + 1),
            ),
        )
        item.update(current_period_start=new_period[0], current_period_end=new_period[1])
        pause = sub["pause_collection"]
        if pause and pause.get("resumes_at") and pause["resumes_at"] <= new_period[0]:
            sub["pause_collection"] = pause = None
        invoice = self._new_invoice(ctx, sub, "subscription_cycle", new_period, old_period)
        sub["latest_invoice"] = invoice["id"]
        self.emit(ctx, "invoice.created", invoice)
        if pause:
            self._paused_invoice(ctx, invoice, pause["behavior"])
        else:
            self._finalize_invoice(ctx, invoice)
            self.emit(ctx, "invoice.finalized", invoice)
            card = self._card_for(sub)
            if outcome == "auto":
                outcome = card["behaviour"]
            intent, charge = self._pay_invoice(
                ctx, invoice, card, outcome, description="Subscription update"
            )
            self._invoice_payment_events(ctx, invoice, intent, charge, outcome)
            sub["status"] = "active" if outcome == "succeed" else "past_due"
        self.store.save(sub, private=private)
        self.emit(ctx, "customer.subscription.updated", sub, diff(old, sub))
        return {"subscription": sub, "invoice": invoice}

    def _paused_invoice(self, ctx: Ctx, invoice: Obj, behavior: str) -> None:
        """pause_collection: Stripe still makes the invoice but does not collect it."""
        if behavior == "keep_as_draft":
            return
        self._finalize_invoice(ctx, invoice)
        if behavior == "void":
            invoice.update(status="void", amount_remaining=0)
            invoice["status_transitions"]["voided_at"] = ctx.now
            event_type = "invoice.voided"
        else:
            invoice["status"] = "uncollectible"
            invoice["status_transitions"]["marked_uncollectible_at"] = ctx.now
            event_type = "invoice.marked_uncollectible"
        self.store.save(invoice)
        self.emit(ctx, event_type, invoice)

    def update_subscription(self, ctx: Ctx, sub_id: str, params: Params) -> Obj:
        params.check(
            known(SubscriptionUpdateParams),
            {
                "items",
                "proration_behavior",
                "pause_collection",
                "cancel_at_period_end",
                "metadata",
                "description",
                "cancellation_details",
                "expand",
            },
        )
        stored = self.load(sub_id, "subscription", "subscription")
        sub, private = stored.data, stored.private
        old = copy.deepcopy(sub)
        if sub["status"] == "canceled" and set(params.data) - {
            "metadata",
            "cancellation_details",
            "expand",
        }:
            raise ApiError.invalid(
                "A canceled subscription can only update its cancellation_details and metadata."
            )
        params.str("proration_behavior", choices=("always_invoice", "create_prorations", "none"))
        sub["metadata"] = merge_metadata(sub["metadata"], params.metadata())
        if "description" in params:
            sub["description"] = params.str("description", max_length=500)
        details = params.sub("cancellation_details")
        if details:
            details.check({"comment", "feedback"}, {"comment", "feedback"})
            sub["cancellation_details"].update(
                comment=details.str("comment", max_length=5000),
                feedback=details.str(
                    "feedback",
                    choices=(
                        "customer_service",
                        "low_quality",
                        "missing_features",
                        "other",
                        "switched_service",
                        "too_complex",
                        "too_expensive",
                        "unused",
                    ),
                ),
            )
        if "pause_collection" in params:
            pause = params.sub("pause_collection")
            if pause is None:
                sub["pause_collection"] = None
            else:
                pause.check({"behavior", "resumes_at"}, {"behavior", "resumes_at"})
                sub["pause_collection"] = {
                    "behavior": pause.str(
                        "behavior",
                        required=True,
                        choices=("keep_as_draft", "mark_uncollectible", "void"),
                    ),
                    "resumes_at": pause.int("resumes_at"),
                }
        cancel_at_period_end = params.bool("cancel_at_period_end")
        if cancel_at_period_end is not None:
            period_end = sub["items"]["data"][0]["current_period_end"]
            sub.update(
                cancel_at_period_end=cancel_at_period_end,
                cancel_at=period_end if cancel_at_period_end else None,
            )
            sub["cancellation_details"]["reason"] = (
                "cancellation_requested" if cancel_at_period_end else None
            )
        interval_changed = False
        if params.list("items"):
            interval_changed = self._update_items(ctx, sub, params)
        invoice_events = None
        if interval_changed:
            # Changing the interval resets the billing cycle and invoices at once (Stripe).
            # The simulator charges the full new price: it does not compute prorations.
            item = sub["items"]["data"][0]
            recurring = item["price"]["recurring"]
            period = (
                ctx.now,
                add_interval(ctx.now, recurring["interval"], recurring["interval_count"]),
            )
            item.update(current_period_start=period[0], current_period_end=period[1])
            sub["billing_cycle_anchor"] = ctx.now
            private.update(anchor=ctx.now, cycle=0)
            invoice = self._new_invoice(ctx, sub, "subscription_update", period, (ctx.now, ctx.now))
            self._finalize_invoice(ctx, invoice)
            card = self._card_for(sub)
            outcome = card["behaviour"]
            intent, charge = self._pay_invoice(
                ctx, invoice, card, outcome, description="Subscription update"
            )
            sub["latest_invoice"] = invoice["id"]
            if outcome != "succeed":
                sub["status"] = "past_due"
            invoice_events = (invoice, intent, charge, outcome)
        self.store.save(sub, private=private)
        if invoice_events:
            self.emit(ctx, "invoice.created", invoice_events[0])
            self._invoice_payment_events(ctx, *invoice_events)
        previous = diff(old, sub)
        if previous:
            self.emit(ctx, "customer.subscription.updated", sub, previous)
        return self.expand(sub, params.expand())

    def _update_items(self, ctx: Ctx, sub: Obj, params: Params) -> bool:
        """Apply ``items[0]``; returns whether the billing interval changed."""
        raw_items = params.list("items") or []
        if len(raw_items) != 1 or not isinstance(raw_items[0], dict):
            raise ApiError.invalid(
                "The Stripe simulator implements subscriptions with exactly "
                "one item: pass items[0][id] and the new price.",
                param="items",
            )
        change = Params(raw_items[0], "items[0]")
        change.check(
            {
                "billing_thresholds",
                "clear_usage",
                "deleted",
                "discounts",
                "id",
                "metadata",
                "plan",
                "price",
                "price_data",
                "quantity",
                "tax_rates",
            },
            {"id", "price", "price_data", "quantity", "metadata"},
        )
        item = sub["items"]["data"][0]
        item_id = change.str("id")
        if item_id != item["id"]:
            raise ApiError.invalid(
                f"Invalid items[0][id]: pass the subscription's item id ({item['id']}) to "
                "change its price; the simulator does not add second items.",
                param="items[0][id]",
            )
        price_id = change.str("price")
        price_data = change.sub("price_data")
        if price_id and price_data:
            raise ApiError.invalid(
                "You may only specify one of these parameters: price, price_data.",
                param="items[0][price_data]",
            )
        old_recurring = item["price"]["recurring"]
        if price_id or price_data:
            if price_data is None:
                price_obj = self.load(price_id, "price", "items[0][price]").data
            else:
                price_obj = self._price_from_data(ctx, price_data, product_data_allowed=False)
            if not price_obj["recurring"]:
                raise ApiError.invalid(
                    "The price specified is not recurring; subscriptions need a recurring price.",
                    param="items[0]",
                )
            if price_obj["currency"] != sub["currency"]:
                raise ApiError.invalid(
                    f"The price currency ({price_obj['currency']}) must match the "
                    f"subscription currency ({sub['currency']}).",
                    param="items[0]",
                )
            item["price"] = price_obj
            item["plan"] = objects.plan_from_price(price_obj)
        quantity = change.int("quantity", minimum=1)
        if quantity is not None:
            item["quantity"] = quantity
        item["metadata"] = merge_metadata(item["metadata"], change.metadata())
        new_recurring = item["price"]["recurring"]
        return (old_recurring["interval"], old_recurring["interval_count"]) != (
            new_recurring["interval"],
            new_recurring["interval_count"],
        )

    def cancel_subscription(self, ctx: Ctx, sub_id: str, params: Params) -> Obj:
        params.check(
            known(SubscriptionCancelParams),
            {"cancellation_details", "invoice_now", "prorate", "expand"},
        )
        # invoice_now/prorate matter for metered usage and prorations, which we do not model.
        params.bool("invoice_now")
        params.bool("prorate")
        stored = self.load(sub_id, "subscription", "subscription")
        sub = stored.data
        if sub["status"] == "canceled":
            raise ApiError.invalid(
                f"This subscription has already been canceled: {sub_id}", code="resource_missing"
            )
        details = params.sub("cancellation_details")
        if details:
            details.check({"comment", "feedback"}, {"comment", "feedback"})
            sub["cancellation_details"].update(
                comment=details.str("comment"), feedback=details.str("feedback")
            )
        self._end_subscription(ctx, sub)
        return self.expand(sub, params.expand())

    def _end_subscription(self, ctx: Ctx, sub: Obj) -> None:
        sub.update(
            status="canceled", canceled_at=ctx.now, ended_at=ctx.now, cancel_at_period_end=False
        )
        sub["cancellation_details"]["reason"] = "cancellation_requested"
        self.store.save(sub)
        self.emit(ctx, "customer.subscription.deleted", sub)
