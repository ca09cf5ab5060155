"""Customers and the Billing Portal: create, delete (which ends their subscriptions),
portal sessions, and the card a donor changes in the portal."""

from __future__ import annotations

import copy

from stripe.params import CustomerCreateParams
from stripe.params.billing_portal import SessionCreateParams as PortalSessionCreateParams

from .. import objects
from ..objects import Obj
from ..params import Params, known
from .base import Ctx, EngineBase, diff


class CustomersMixin(EngineBase):
    """Customers, their saved cards and Billing Portal sessions."""

    def create_customer(self, ctx: Ctx, params: Params) -> Obj:
        params.check(
            known(CustomerCreateParams), {"email", "name", "metadata", "description", "expand"}
        )
        customer = objects.customer(
            email=params.str("email", max_length=512),
            name=params.str("name", max_length=256),
            metadata={k: v for k, v in (params.metadata() or {}).items() if v},
            created=ctx.now,
        )
        customer["description"] = params.str("description")
        self.store.save(customer, private={"cards": {}})
        self.emit(ctx, "customer.created", customer)
        return self.expand(customer, params.expand())

    def delete_customer(self, ctx: Ctx, customer_id: str) -> Obj:
        stored = self.load_live_customer(customer_id, "id")
        # Deleting a customer cancels their subscriptions at once, as Stripe does.
        for sub in self.store.of_type("subscription", where_customer=customer_id):
            if sub.data["status"] != "canceled":
                self._end_subscription(ctx, sub.data)
        stub = objects.deleted_customer(customer_id)
        self.store.save(stub, private={**stored.private, "before_deletion": stored.data})
        self.emit(ctx, "customer.deleted", stored.data)
        return stub

    def create_portal_session(self, ctx: Ctx, params: Params) -> Obj:
        params.check(
            known(PortalSessionCreateParams), {"customer", "return_url", "locale", "expand"}
        )
        customer_id = params.str("customer", required=True)
        self.load_live_customer(customer_id)
        session = objects.billing_portal_session(
            customer_id=customer_id, return_url=params.url("return_url"), created=ctx.now
        )
        session.update(
            url=f"{ctx.base_url}/billing_portal/{session['id']}", locale=params.str("locale")
        )
        self.store.save(session)
        return self.expand(session, params.expand())

    def update_card(self, ctx: Ctx, portal_id: str, choice: str) -> None:
        portal = self.load(portal_id, "billing_portal.session").data
        stored = self.load_live_customer(portal["customer"])
        customer, card = stored.data, self._new_card(choice)
        old = copy.deepcopy(customer)
        stored.private.setdefault("cards", {})[card["payment_method"]] = card
        customer["invoice_settings"]["default_payment_method"] = card["payment_method"]
        self.store.save(customer, private=stored.private)
        self.emit(ctx, "customer.updated", customer, diff(old, customer))
        for sub_stored in self.store.of_type("subscription", where_customer=customer["id"]):
            sub = sub_stored.data
            if sub["status"] != "canceled" and sub["default_payment_method"]:
                old_sub = copy.deepcopy(sub)
                sub["default_payment_method"] = card["payment_method"]
                self.store.save(sub)
                self.emit(ctx, "customer.subscription.updated", sub, diff(old_sub, sub))
