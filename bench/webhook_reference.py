"""The verify-and-enqueue reference for the webhook benchmark (bench/webhooks.py): what the
peer donation apps do with a Stripe webhook, as a minimal Flask app.

    DATABASE_URL=postgresql://... WEBHOOK_SECRET=whsec_... \
        gunicorn -w 2 bench.webhook_reference:app

POST /webhook verifies the Stripe-Signature with the stripe library
(stripe.Webhook.construct_event), INSERTs the event (id unique, type, payload) into a table
through SQLAlchemy's connection pool, commits, and answers 200 ("duplicate" when the id is there
already). No CSRF, session, security headers or logging: the ceiling a store-first webhook
is compared with. Its table (TABLE) is created by the benchmark before it starts.
"""

from __future__ import annotations

import os

import stripe
from flask import Flask, Response, request
from sqlalchemy import create_engine, text

DATABASE_URL = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
SECRET = os.environ["WEBHOOK_SECRET"]

#: Created by the benchmark before the server starts (TABLE below).
engine = create_engine(DATABASE_URL, pool_size=4)
TABLE = (
    "CREATE TABLE IF NOT EXISTS queued_events (id bigserial PRIMARY KEY, "
    "event_id text UNIQUE NOT NULL, type text NOT NULL, payload text NOT NULL, "
    "received_at timestamptz NOT NULL DEFAULT now())"
)
INSERT = text(
    "INSERT INTO queued_events (event_id, type, payload) VALUES (:id, :type, :payload) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING id"
)

app = Flask(__name__)


@app.post("/webhook")
def webhook():
    payload = request.get_data()
    try:
        event = stripe.Webhook.construct_event(
            payload, request.headers.get("Stripe-Signature", ""), SECRET
        )
    except (ValueError, stripe.SignatureVerificationError):
        return Response("bad signature\n", 400)
    with engine.begin() as connection:  # commits when the block ends
        inserted = connection.execute(
            INSERT,
            {"id": event["id"], "type": event["type"], "payload": payload.decode()},
        ).first()
    return Response("queued\n" if inserted else "duplicate\n", 200, mimetype="text/plain")


@app.get("/healthz")
def healthz():
    return Response("ok\n", 200)
