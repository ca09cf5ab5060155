"""The page surface: the hosted pages a donor clicks through (Checkout, 3-D Secure, the
Billing Portal, invoices and receipts) and an index of recent webhook deliveries."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Rule
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from . import objects
from .engine import CARDS, Ctx, Engine, interval_text, request_ctx
from .objects import Obj, format_amount
from .params import ApiError
from .store import Store

TEMPLATES_DIR = Path(__file__).with_name("templates")

PAGE_ERRORS = {
    "card_declined": "Your card was declined. Try again, or use a different card.",
    "authentication_failed": objects.decline("authentication_required")["message"],
    "email_required": "Enter your email address.",
}

_CSS = """\
body { font-family: system-ui, sans-serif; margin: 0; color: #1a1a1a; background: #f6f7f9;
       line-height: 1.5; }
main { max-width: 36rem; margin: 2rem auto; padding: 1.5rem; background: #fff;
       border: 1px solid #d0d4da; border-radius: 8px; }
.test-banner { margin: 0; padding: .75rem 1rem; background: #ffe08a; color: #1a1a1a;
               text-align: center; font-weight: 700; }
.alert { padding: .75rem 1rem; border: 2px solid #b3261e; background: #fdecea; }
.notice { padding: .75rem 1rem; border: 2px solid #1b6e3a; background: #e7f5ec; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .4rem; border-bottom: 1px solid #d0d4da; }
label { display: block; margin-top: 1rem; font-weight: 600; }
input[type=email], input[type=text] { width: 100%; padding: .5rem; font-size: 1rem;
                                      box-sizing: border-box; }
fieldset { margin-top: 1rem; border: 1px solid #d0d4da; }
fieldset label { font-weight: 400; margin-top: .25rem; }
.actions { display: flex; gap: .75rem; flex-wrap: wrap; margin-top: 1.5rem; }
button { font-size: 1rem; padding: .6rem 1.1rem; border-radius: 6px; cursor: pointer;
         border: 2px solid #1a1a1a; background: #fff; color: #1a1a1a; }
button.primary { background: #1d4ed8; border-color: #1d4ed8; color: #fff; }
a { color: #1d4ed8; }
:focus-visible { outline: 3px solid #1a1a1a; outline-offset: 2px; }
"""


RULES = [
    Rule("/", endpoint="page:index", methods=["GET"]),
    Rule("/static/simulator.css", endpoint="page:css", methods=["GET"]),
    Rule("/checkout/<id>", endpoint="page:checkout", methods=["GET"]),
    Rule("/checkout/<id>/pay", endpoint="page:checkout_pay", methods=["POST"]),
    Rule("/checkout/<id>/authenticate", endpoint="page:authenticate", methods=["GET", "POST"]),
    Rule("/billing_portal/<id>", endpoint="page:portal", methods=["GET"]),
    Rule("/billing_portal/<id>/card", endpoint="page:portal_card", methods=["POST"]),
    Rule("/invoices/<id>", endpoint="page:invoice", methods=["GET"]),
    Rule("/receipts/<id>", endpoint="page:receipt", methods=["GET"]),
]


class PagesSurface:
    """Answers ``page:`` endpoints: one method ``_page_<endpoint>`` per route."""

    def __init__(
        self, store: Store, engine: Engine, *, webhook_url: str | None, delivering: bool
    ) -> None:
        self.store = store
        self.engine = engine
        self.webhook_url = webhook_url
        self.delivering = delivering
        self._jinja = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self._jinja.filters["money"] = lambda amount, currency: format_amount(amount, currency)
        self._jinja.filters["date"] = lambda ts: (
            datetime.fromtimestamp(ts, UTC).strftime("%d %B %Y") if ts else ""
        )

    def _render(self, template: str, status: int = 200, **context: Any) -> Response:
        html = self._jinja.get_template(template).render(**context)
        return Response(
            html,
            status,
            content_type="text/html; charset=utf-8",
            headers={
                "Cache-Control": "no-store",
                "Content-Security-Policy": "default-src 'self'; "
                "form-action *; frame-ancestors 'none'",
            },
        )

    def handle(self, request: Request, name: str, args: Mapping[str, Any]) -> Response:
        if name == "css":
            return Response(_CSS, content_type="text/css; charset=utf-8")
        ctx = request_ctx(request)
        try:
            with self.store.transaction():
                self.engine.expire_due_sessions(ctx)
                return getattr(self, f"_page_{name}")(ctx, request, **args)
        except ApiError as exc:
            if exc.status == 404:
                return self._render(
                    "message.html",
                    404,
                    title="Not found",
                    message="This page does not exist in the Stripe simulator.",
                    link=None,
                )
            return self._render(
                "message.html",
                exc.status,
                title="Something went wrong",
                message=exc.body["message"],
                link=None,
            )
        except HTTPException as exc:
            return exc.get_response(request.environ)

    def _page_index(self, ctx: Ctx, request: Request) -> Response:
        recent = self.store.deliveries()[-25:][::-1]
        return self._render(
            "index.html", events=recent, webhook_url=self.webhook_url, delivering=self.delivering
        )

    def _page_checkout(self, ctx: Ctx, request: Request, id: str) -> Response:
        stored = self.engine.load(id, "checkout.session")
        session = stored.data
        if session["status"] == "complete":
            return self._render(
                "message.html",
                title="Payment complete",
                message="This payment is complete. Thank you.",
                link=(_success_url(session), "Return to the site"),
            )
        if session["status"] == "expired":
            return self._render(
                "message.html",
                title="Checkout expired",
                message="This checkout page has expired. Start again from the site.",
                link=(session["cancel_url"], "Return to the site")
                if session["cancel_url"]
                else None,
            )
        error = PAGE_ERRORS.get(request.args.get("error", ""))
        payer = stored.private.get("payer") or {}
        lines = []
        for line in stored.private["line_items"]:
            lines.append(
                {
                    "name": line["description"],
                    "quantity": line["quantity"],
                    "amount": line["amount_total"],
                    "every": interval_text(line["price"]["recurring"]),
                }
            )
        submit = {"donate": "Donate", "book": "Book", "subscribe": "Subscribe"}.get(
            session["submit_type"] or "",
            "Subscribe" if session["mode"] == "subscription" else "Pay",
        )
        return self._render(
            "checkout.html",
            session=session,
            lines=lines,
            error=error,
            known_email=self.engine.known_email(session),
            email=payer.get("email") or "",
            name=payer.get("name") or "",
            every=lines[0]["every"] if session["mode"] == "subscription" else "",
            submit_label=submit,
        )

    def _page_checkout_pay(self, ctx: Ctx, request: Request, id: str) -> Response:
        outcome = request.form.get("outcome")
        if outcome not in ("succeed", "decline", "requires_action"):
            return Response("Choose an outcome.\n", 400)
        result = self.engine.attempt_checkout(
            ctx,
            id,
            outcome,
            (request.form.get("email") or "").strip() or None,
            (request.form.get("name") or "").strip() or None,
        )
        return self._after_attempt(ctx, id, result)

    def _after_attempt(self, ctx: Ctx, session_id: str, result: str | None) -> Response:
        base = f"{ctx.base_url}/checkout/{session_id}"
        if result == "authenticate":
            return redirect(f"{base}/authenticate", 303)
        if result:
            return redirect(f"{base}?error={result}", 303)
        session = self.engine.load(session_id, "checkout.session").data
        if session["status"] == "complete":
            return redirect(_success_url(session), 303)
        return redirect(base, 303)

    def _page_authenticate(self, ctx: Ctx, request: Request, id: str) -> Response:
        stored = self.engine.load(id, "checkout.session")
        if request.method == "POST":
            result = request.form.get("result")
            if result not in ("pass", "fail"):
                return Response("Choose pass or fail.\n", 400)
            outcome = self.engine.authenticate_checkout(ctx, id, result == "pass")
            return self._after_attempt(ctx, id, outcome)
        if stored.data["status"] != "open" or not stored.private.get("awaiting_authentication"):
            return redirect(f"{ctx.base_url}/checkout/{id}", 303)
        return self._render("authenticate.html", session=stored.data)

    def _page_portal(self, ctx: Ctx, request: Request, id: str) -> Response:
        portal = self.engine.load(id, "billing_portal.session").data
        stored = self.engine.load_live_customer(portal["customer"])
        customer = stored.data
        card = stored.private.get("cards", {}).get(
            customer["invoice_settings"]["default_payment_method"]
        )
        subs = []
        for sub in self.store.of_type("subscription", where_customer=customer["id"]):
            data = sub.data
            if card is None and data["status"] != "canceled" and data["default_payment_method"]:
                card = stored.private.get("cards", {}).get(data["default_payment_method"])
            item = data["items"]["data"][0]
            product = self.engine.load(item["price"]["product"], "product").data
            subs.append(
                {
                    "name": product["name"],
                    "status": data["status"],
                    "amount": item["price"]["unit_amount"] * item["quantity"],
                    "currency": data["currency"],
                    "every": interval_text(item["price"]["recurring"]),
                    "next": item["current_period_end"],
                    "paused": bool(data["pause_collection"]),
                    "ending": data["cancel_at_period_end"],
                }
            )
        return self._render(
            "portal.html",
            portal=portal,
            customer=customer,
            card=card,
            subscriptions=subs,
            cards=CARDS,
            updated=request.args.get("updated") == "1",
        )

    def _page_portal_card(self, ctx: Ctx, request: Request, id: str) -> Response:
        choice = request.form.get("card")
        if choice not in CARDS:
            return Response("Choose a card.\n", 400)
        self.engine.update_card(ctx, id, choice)
        return redirect(f"{ctx.base_url}/billing_portal/{id}?updated=1", 303)

    def _page_invoice(self, ctx: Ctx, request: Request, id: str) -> Response:
        invoice = self.engine.load(id, "invoice").data
        rows = [
            ("Invoice number", invoice["number"] or "(draft)"),
            ("Status", invoice["status"]),
            ("Amount due", format_amount(invoice["amount_due"], invoice["currency"])),
            ("Amount paid", format_amount(invoice["amount_paid"], invoice["currency"])),
        ]
        rows += [("Item", line["description"]) for line in invoice["lines"]["data"]]
        return self._render("document.html", title="Invoice", rows=rows)

    def _page_receipt(self, ctx: Ctx, request: Request, id: str) -> Response:
        charge = self.engine.load(id, "charge").data
        card = charge["payment_method_details"]["card"]
        rows = [
            ("Amount", format_amount(charge["amount"], charge["currency"])),
            ("Refunded", format_amount(charge["amount_refunded"], charge["currency"])),
            ("Status", charge["status"]),
            ("Card", f"{card['brand'].title()} ending {card['last4']}"),
            ("Date", datetime.fromtimestamp(charge["created"], UTC).strftime("%d %B %Y")),
        ]
        return self._render("document.html", title="Receipt", rows=rows)


def _success_url(session: Obj) -> str:
    return session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"])
