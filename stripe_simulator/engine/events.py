"""Events: every change is recorded as a Stripe event (sent as a webhook when delivery is
on) and listed by /v1/events with Stripe's cursors and filters."""

from __future__ import annotations

from stripe.params import EventListParams

from .. import objects
from ..objects import Obj
from ..params import ApiError, Params, created_filter, known
from .base import Ctx, EngineBase


class EventsMixin(EngineBase):
    """Recording and listing events."""

    def emit(self, ctx: Ctx, event_type: str, obj: Obj, previous: Obj | None = None) -> Obj:
        event = objects.event(
            type=event_type,
            obj=obj,
            created=ctx.now,
            request_id=ctx.request_id,
            idempotency_key=ctx.idempotency_key,
            previous_attributes=previous,
            pending_webhooks=1 if self.deliver else 0,
        )
        self.store.add_event(event, deliver=self.deliver)
        return event

    def list_events(self, params: Params) -> Obj:
        params.check(
            known(EventListParams),
            {"limit", "starting_after", "ending_before", "created", "type", "types", "expand"},
        )
        limit = params.int("limit", minimum=1) or 10
        if limit > 100:
            raise ApiError.invalid(
                "Invalid limit: must be less than or equal to 100", param="limit"
            )
        starting_after, ending_before = params.str("starting_after"), params.str("ending_before")
        if starting_after and ending_before:
            raise ApiError.invalid(
                "You may only specify one of these parameters: ending_before, starting_after.",
                param="ending_before",
            )
        cursors = {}
        for key, value in (("starting_after", starting_after), ("ending_before", ending_before)):
            if value:
                seq = self.store.event_seq(value)
                if seq is None:
                    raise ApiError.missing("event", value, key)
                cursors[key] = seq
        event_type = params.str("type")
        types = [t for t in (params.list("types") or []) if isinstance(t, str)]
        if event_type and types:
            raise ApiError.invalid(
                "You may only specify one of these parameters: type, types.", param="types"
            )
        page, has_more = self.store.list_events(
            limit=limit,
            before_seq=cursors.get("starting_after"),
            after_seq=cursors.get("ending_before"),
            created=created_filter(params),
            types=[event_type] if event_type else types,
        )
        return self.expand(
            {"object": "list", "data": page, "has_more": has_more, "url": "/v1/events"},
            params.expand(),
        )
