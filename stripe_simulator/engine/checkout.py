"""Checkout: Sessions (created by the API, clicked through on the hosted page, expired),
the payment behind a payment-mode session, and delayed payments that settle later."""

from __future__ import annotations

import copy
import re

from stripe.params.checkout import SessionCreateParams as CheckoutSessionCreateParams

from .. import objects
from ..objects import Obj, format_amount, new_id
from ..params import ApiError, Params, known
from ..store import StoredObject
from .base import Ctx, EngineBase


class CheckoutMixin(EngineBase):
    """Checkout Sessions and the payments they take."""

    def expire_due_sessions(self, ctx: Ctx) -> None:
        """Stripe expires open Checkout Sessions at ``expires_at``; we do it lazily."""
        for session_id in self.store.open_sessions_due(ctx.now):
            self._expire_session(ctx, self.load(session_id, "checkout.session"))

    def create_checkout_session(self, ctx: Ctx, params: Params) -> Obj:
        params.check(
            known(CheckoutSessionCreateParams),
            {
                "mode",
                "line_items",
                "success_url",
                "cancel_url",
                "customer",
                "customer_email",
                "customer_creation",
                "client_reference_id",
                "metadata",
                "subscription_data",
                "payment_intent_data",
                "expires_at",
                "submit_type",
                "locale",
                "payment_method_types",
                "ui_mode",
                "expand",
            },
        )
        mode = params.str("mode", required=True, choices=("payment", "setup", "subscription"))
        if mode == "setup":
            raise ApiError.invalid(
                "The Stripe simulator does not implement mode=setup.", param="mode"
            )
        success_url = params.url("success_url", required=True)
        cancel_url = params.url("cancel_url")
        params.str("ui_mode", choices=("hosted",))
        methods = params.list("payment_method_types")
        if methods is not None and methods != ["card"]:
            raise ApiError.invalid(
                "The Stripe simulator only implements card payments.", param="payment_method_types"
            )
        customer_id = params.str("customer")
        customer_email = params.str("customer_email", max_length=800)
        if customer_id and customer_email:
            raise ApiError.invalid(
                "You may only specify one of these parameters: customer, customer_email.",
                param="customer_email",
            )
        if customer_id:
            self.load_live_customer(customer_id)
        if customer_email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", customer_email):
            raise ApiError.invalid(
                f"Invalid email address: {customer_email}",
                param="customer_email",
                code="email_invalid",
            )
        customer_creation = params.str("customer_creation", choices=("always", "if_required"))
        if customer_creation and mode != "payment":
            raise ApiError.invalid(
                "`customer_creation` can only be used in `payment` mode.", param="customer_creation"
            )
        if mode == "payment" and customer_creation is None:
            customer_creation = "if_required"
        submit_type = params.str(
            "submit_type", choices=("auto", "book", "donate", "pay", "subscribe")
        )
        client_reference_id = params.str("client_reference_id", max_length=200)
        metadata = {k: v for k, v in (params.metadata() or {}).items() if v != ""}

        intent_data = params.sub("payment_intent_data")
        if intent_data and mode != "payment":
            raise ApiError.invalid(
                f"You can not pass `payment_intent_data` in `{mode}` mode.",
                param="payment_intent_data",
            )
        intent_private: Obj = {}
        if intent_data:
            intent_data.check(
                {
                    "application_fee_amount",
                    "capture_method",
                    "description",
                    "metadata",
                    "on_behalf_of",
                    "receipt_email",
                    "setup_future_usage",
                    "shipping",
                    "statement_descriptor",
                    "statement_descriptor_suffix",
                    "transfer_data",
                    "transfer_group",
                },
                {"description", "metadata", "receipt_email", "statement_descriptor_suffix"},
            )
            intent_private = {
                "description": intent_data.str("description", max_length=1000),
                "metadata": {k: v for k, v in (intent_data.metadata() or {}).items() if v},
                "receipt_email": intent_data.str("receipt_email"),
                "statement_descriptor_suffix": intent_data.str(
                    "statement_descriptor_suffix", max_length=22
                ),
            }
        sub_data = params.sub("subscription_data")
        if sub_data and mode != "subscription":
            raise ApiError.invalid(
                f"You can not pass `subscription_data` in `{mode}` mode.", param="subscription_data"
            )
        sub_private: Obj = {}
        if sub_data:
            sub_data.check(
                {
                    "application_fee_percent",
                    "billing_cycle_anchor",
                    "billing_cycle_anchor_config",
                    "billing_mode",
                    "default_tax_rates",
                    "description",
                    "invoice_settings",
                    "metadata",
                    "on_behalf_of",
                    "pending_invoice_item_interval",
                    "proration_behavior",
                    "transfer_data",
                    "trial_end",
                    "trial_period_days",
                    "trial_settings",
                },
                {"description", "metadata"},
            )
            sub_private = {
                "description": sub_data.str("description", max_length=500),
                "metadata": {k: v for k, v in (sub_data.metadata() or {}).items() if v},
            }

        expires_at = params.int("expires_at")
        if expires_at is None:
            expires_at = ctx.now + 24 * 3600
        elif not ctx.now + 30 * 60 <= expires_at <= ctx.now + 24 * 3600:
            raise ApiError.invalid(
                "The `expires_at` timestamp must be between 30 minutes and 24 hours from "
                "Checkout Session creation.",
                param="expires_at",
            )

        lines, currency = self._line_items(ctx, params, mode)
        total = sum(line["amount_total"] for line in lines)
        minimum = objects.MINIMUM_CHARGE.get(currency)
        if minimum and total < minimum:
            raise ApiError.invalid(
                "The Checkout Session's total amount due must add up to at least "
                f"{format_amount(minimum, currency)} {currency}",
                code="amount_too_small",
                param="line_items",
            )

        session = objects.checkout_session(
            mode=mode,
            currency=currency,
            amount_total=total,
            success_url=success_url,
            cancel_url=cancel_url,
            customer_id=customer_id,
            customer_email=customer_email,
            customer_creation=customer_creation,
            client_reference_id=client_reference_id,
            metadata=metadata,
            submit_type=submit_type,
            locale=params.str("locale"),
            expires_at=expires_at,
            created=ctx.now,
        )
        session["url"] = f"{ctx.base_url}/checkout/{session['id']}"
        private = {
            "line_items": lines,
            "payment_intent_data": intent_private,
            "subscription_data": sub_private,
        }
        self.store.save(session, private=private, open_until=expires_at)
        return self.expand(session, params.expand())

    def _line_items(self, ctx: Ctx, params: Params, mode: str) -> tuple[list[Obj], str]:
        raw_items = params.list("line_items")
        if not raw_items:
            raise ApiError.invalid(
                "Missing required param: line_items.", param="line_items", code="parameter_missing"
            )
        lines, currencies, recurring_count = [], set(), 0
        for index, raw in enumerate(raw_items):
            if not isinstance(raw, dict):
                raise ApiError.invalid(
                    f"Invalid object: line_items[{index}]", param=f"line_items[{index}]"
                )
            item = Params(raw, f"line_items[{index}]")
            item.check(
                {"adjustable_quantity", "metadata", "price", "price_data", "quantity", "tax_rates"},
                {"price", "price_data", "quantity"},
            )
            quantity = item.int("quantity", required=True, minimum=1)
            price_id = item.str("price")
            price_data = item.sub("price_data")
            if bool(price_id) == bool(price_data):
                raise ApiError.invalid(
                    f"You must specify either `price` or `price_data` in line_items[{index}].",
                    param=f"line_items[{index}]",
                )
            if price_data is None:
                price_obj = self.load(price_id, "price", item.name("price")).data
            else:
                price_obj = self._price_from_data(ctx, price_data, product_data_allowed=True)
            product_obj = self.load(price_obj["product"], "product").data
            if price_obj["recurring"]:
                recurring_count += 1
                if mode == "payment":
                    raise ApiError.invalid(
                        "You specified `payment` mode but passed a recurring price. Either "
                        "switch to `subscription` mode or use only one-time prices.",
                        param=f"line_items[{index}]",
                    )
            elif mode == "subscription":
                raise ApiError.invalid(
                    "The Stripe simulator implements subscription mode with one recurring "
                    "price only; one-time items are not supported there.",
                    param=f"line_items[{index}]",
                )
            currencies.add(price_obj["currency"])
            lines.append(
                objects.checkout_line_item(
                    price_obj=price_obj, product_name=product_obj["name"], quantity=quantity
                )
            )
        if mode == "subscription" and recurring_count != 1:
            raise ApiError.invalid(
                "The Stripe simulator implements subscription mode with exactly one line item.",
                param="line_items",
            )
        if len(currencies) > 1:
            raise ApiError.invalid("All line items must use the same currency.", param="line_items")
        return lines, currencies.pop()

    def session_line_items(self, session: Obj) -> Obj:
        stored = self.load(session["id"], "checkout.session")
        return {
            "object": "list",
            "data": copy.deepcopy(stored.private["line_items"]),
            "has_more": False,
            "url": f"/v1/checkout/sessions/{session['id']}/line_items",
        }

    def expire_checkout_session(self, ctx: Ctx, session_id: str, params: Params) -> Obj:
        params.check({"expand"}, {"expand"})
        stored = self.load(session_id, "checkout.session", "session")
        if stored.data["status"] != "open":
            raise ApiError.invalid(
                'Only Checkout Sessions with a status in ["open"] can be expired. This '
                f'Checkout Session has a status of "{stored.data["status"]}".'
            )
        return self.expand(self._expire_session(ctx, stored), params.expand())

    def _expire_session(self, ctx: Ctx, stored: StoredObject) -> Obj:
        session = stored.data
        session.update(status="expired", url=None)
        if session["payment_intent"]:
            intent = self.load(session["payment_intent"], "payment_intent").data
            intent.update(
                status="canceled",
                canceled_at=ctx.now,
                cancellation_reason="abandoned",
                last_payment_error=None,
                next_action=None,
            )
            self.store.save(intent)
            self.emit(ctx, "payment_intent.canceled", intent)
        self.store.save(session, open_until=None)
        self.emit(ctx, "checkout.session.expired", session)
        return session

    def attempt_checkout(
        self, ctx: Ctx, session_id: str, outcome: str, email: str | None, name: str | None
    ) -> str | None:
        """A click on the checkout page. Returns a PAGE_ERRORS code, "authenticate" or None."""
        stored = self.load(session_id, "checkout.session")
        session, private = stored.data, stored.private
        if session["status"] != "open":
            return None
        email = email or self.known_email(session)
        if not email:
            return "email_required"
        private["payer"] = {"email": email, "name": name}
        if outcome == "decline":
            if session["mode"] == "payment":
                self._failed_checkout_payment(ctx, stored, objects.decline("generic_decline"))
            self.store.save(session, private=private, open_until=session["expires_at"])
            return "card_declined"
        if outcome == "requires_action":
            if session["mode"] == "payment":
                intent = self._session_intent(ctx, stored)
                intent.update(
                    status="requires_action",
                    next_action={
                        "type": "use_stripe_sdk",
                        "use_stripe_sdk": {
                            "type": "three_d_secure_redirect",
                            "stripe_js": f"{ctx.base_url}/checkout/{session_id}/authenticate",
                        },
                    },
                )
                self.store.save(intent)
                self.emit(ctx, "payment_intent.requires_action", intent)
            private["awaiting_authentication"] = True
            self.store.save(session, private=private, open_until=session["expires_at"])
            return "authenticate"
        self.complete_checkout(ctx, stored, three_d_secure=False)
        return None

    def authenticate_checkout(self, ctx: Ctx, session_id: str, passed: bool) -> str | None:
        stored = self.load(session_id, "checkout.session")
        session, private = stored.data, stored.private
        if session["status"] != "open" or not private.pop("awaiting_authentication", False):
            return None
        if passed:
            self.complete_checkout(ctx, stored, three_d_secure=True)
            return None
        if session["mode"] == "payment":
            failure = objects.decline("authentication_required")
            intent = self._session_intent(ctx, stored)
            intent.update(
                status="requires_payment_method",
                next_action=None,
                last_payment_error=objects.last_payment_error(
                    failure, charge_id=None, payment_method_id=new_id("pm_")
                ),
            )
            self.store.save(intent)
            self.emit(ctx, "payment_intent.payment_failed", intent)
        self.store.save(session, private=private, open_until=session["expires_at"])
        return "authentication_failed"

    def known_email(self, session: Obj) -> str | None:
        if session["customer_email"]:
            return session["customer_email"]
        if session["customer"]:
            return self.load(session["customer"], "customer").data.get("email")
        return None

    def _session_intent(self, ctx: Ctx, stored: StoredObject) -> Obj:
        """The session's PaymentIntent, created at the first confirmation attempt."""
        session = stored.data
        if session["payment_intent"]:
            return self.load(session["payment_intent"], "payment_intent").data
        data = stored.private["payment_intent_data"]
        intent = objects.payment_intent(
            amount=session["amount_total"],
            currency=session["currency"],
            customer_id=session["customer"],
            description=data.get("description"),
            metadata=dict(data.get("metadata") or {}),
            receipt_email=data.get("receipt_email"),
            created=ctx.now,
        )
        intent["statement_descriptor_suffix"] = data.get("statement_descriptor_suffix")
        self.store.save(intent)
        session["payment_intent"] = intent["id"]
        return intent

    def _failed_checkout_payment(self, ctx: Ctx, stored: StoredObject, failure: dict) -> None:
        intent = self._session_intent(ctx, stored)
        payer = stored.private["payer"]
        card = self._new_card("visa_4242")
        charge = self._charge(ctx, intent, card, payer, failure=failure)
        self.emit(ctx, "charge.failed", charge)
        self.emit(ctx, "payment_intent.payment_failed", intent)

    def complete_checkout(
        self, ctx: Ctx, stored: StoredObject, *, three_d_secure: bool, paid: bool = True
    ) -> None:
        """The payer's payment went through (or, ``paid=False``, is on its way: async)."""
        session, private = stored.data, stored.private
        payer = private["payer"]
        customer = self._checkout_customer(ctx, session, payer)
        card = self._new_card("visa_4242")
        later_events: list[tuple[str, Obj]] = []
        if session["mode"] == "payment":
            intent = self._session_intent(ctx, stored)
            intent["customer"] = customer["id"] if customer else None
            if paid:
                charge = self._charge(ctx, intent, card, payer, three_d_secure=three_d_secure)
                later_events = [("payment_intent.succeeded", intent), ("charge.succeeded", charge)]
            else:
                intent.update(
                    status="processing",
                    payment_method=card["payment_method"],
                    processing={"type": "card"},
                )
                self.store.save(intent)
                later_events = [("payment_intent.processing", intent)]
        else:
            if customer is None:  # _checkout_customer makes one in subscription mode
                raise RuntimeError(f"subscription checkout {session['id']} has no customer")
            self._remember_card(customer, card)
            sub, invoice, intent, charge = self._start_subscription(
                ctx, session, private, customer, card
            )
            session.update(subscription=sub["id"], invoice=invoice["id"])
            later_events = [
                ("invoice.paid", invoice),
                ("invoice.payment_succeeded", invoice),
                ("customer.subscription.created", sub),
                ("payment_intent.succeeded", intent),
                ("charge.succeeded", charge),
            ]
        session.update(
            status="complete",
            payment_status="paid" if paid else "unpaid",
            url=None,
            customer=customer["id"] if customer else None,
            customer_details=objects.customer_details(email=payer["email"], name=payer.get("name")),
        )
        private.pop("awaiting_authentication", None)
        self.store.save(session, private=private, open_until=None)
        self.emit(ctx, "checkout.session.completed", session)
        for event_type, obj in later_events:
            self.emit(ctx, event_type, obj)

    def _checkout_customer(self, ctx: Ctx, session: Obj, payer: Obj) -> Obj | None:
        if session["customer"]:
            return self.load(session["customer"], "customer").data
        # Stripe makes a Customer in payment mode only with customer_creation=always.
        if session["mode"] == "payment" and session["customer_creation"] != "always":
            return None
        customer = objects.customer(
            email=payer["email"], name=payer.get("name"), metadata={}, created=ctx.now
        )
        self.store.save(customer, private={"cards": {}})
        self.emit(ctx, "customer.created", customer)
        return customer

    def async_payment(self, ctx: Ctx, session_id: str, outcome: str) -> Obj:
        """Control: a delayed payment method (e.g. a bank debit) settles or fails."""
        stored = self.load(session_id, "checkout.session")
        session = stored.data
        if session["mode"] != "payment":
            raise ApiError.invalid(
                "The Stripe simulator implements delayed payments in payment mode only."
            )
        if session["status"] == "open":
            stored.private.setdefault(
                "payer", {"email": self.known_email(session) or "donor@example.org", "name": None}
            )
            self.complete_checkout(ctx, stored, three_d_secure=False, paid=False)
            stored = self.load(session_id, "checkout.session")
            session = stored.data
        elif session["status"] != "complete" or session["payment_status"] != "unpaid":
            raise ApiError.invalid(
                "Only a completed, unpaid Checkout Session can have a delayed payment outcome."
            )
        if outcome == "pending":
            return session
        intent = self.load(session["payment_intent"], "payment_intent").data
        card = self._new_card("visa_4242")
        payer = stored.private["payer"]
        if outcome == "succeeded":
            charge = self._charge(ctx, intent, card, payer)
            session["payment_status"] = "paid"
            self.store.save(session)
            self.emit(ctx, "checkout.session.async_payment_succeeded", session)
            self.emit(ctx, "payment_intent.succeeded", intent)
            self.emit(ctx, "charge.succeeded", charge)
        else:
            charge = self._charge(
                ctx, intent, card, payer, failure=objects.decline("insufficient_funds")
            )
            self.emit(ctx, "checkout.session.async_payment_failed", session)
            self.emit(ctx, "payment_intent.payment_failed", intent)
            self.emit(ctx, "charge.failed", charge)
        return session
