"""Stripe's request parameters and error answers: bracket-notation decoding, typed reads
with Stripe's error messages, and the JSON error shape every surface answers with."""

from __future__ import annotations

import builtins
import json
import re
from typing import Any, Literal, overload

from werkzeug.wrappers import Response

from .objects import Obj

# Request options that stripe-python's TypedDicts mix into their param types; never sent.
_REQUEST_OPTIONS = {
    "api_key",
    "content_type",
    "headers",
    "idempotency_key",
    "max_network_retries",
    "stripe_account",
    "stripe_context",
    "stripe_version",
}


def known(params_type: Any) -> frozenset[str]:
    """The parameter names that Stripe's API accepts, from stripe-python's own typing."""
    keys = params_type.__required_keys__ | params_type.__optional_keys__
    return frozenset(keys - _REQUEST_OPTIONS)


# --- errors -------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered in Stripe's JSON shape: {"error": {"type", "message", "code", ...}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: Obj = {"type": type, "message": message, "code": code}
        if param is not None:
            self.body["param"] = param
        if decline_code is not None:
            self.body["decline_code"] = decline_code
        if code:
            self.body["doc_url"] = f"https://docs.stripe.com/error-codes/{code.replace('_', '-')}"

    @classmethod
    def invalid(cls, message: str, param: str | None = None, code: str | None = None):
        return cls(400, message, param=param, code=code)

    @classmethod
    def missing(cls, object_type: str, object_id: str, param: str = "id"):
        # Stripe answers 404 for an unknown id in the URL, 400 for one in the parameters.
        return cls(
            404 if param == "id" else 400,
            f"No such {object_type}: '{object_id}'",
            code="resource_missing",
            param=param,
        )

    def response(self, headers: dict[str, str] | None = None) -> Response:
        return json_response({"error": self.body}, self.status, headers)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None):
    return Response(
        json.dumps(body, indent=2), status=status, headers=headers, content_type="application/json"
    )


# --- Stripe's bracket notation ---------------------------------------------------------------

_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT_RE = re.compile(r"\[([^\[\]]*)\]")


def decode_params(pairs: list[tuple[str, str]]) -> Obj:
    """Turn ``a[b][0][c]=v`` pairs into nested dicts and lists, as Stripe's API reads them.

    ``x[]=1&x[]=2`` appends; dicts whose keys are all indexes become lists, except under
    ``metadata`` where "0" is an ordinary key.
    """
    root: Obj = {}
    for raw_key, value in pairs:
        match = _KEY_RE.match(raw_key)
        if not match:
            raise ApiError.invalid(f"Invalid parameter name: {raw_key}", param=raw_key)
        parts = [match.group(1), *_SEGMENT_RE.findall(match.group(2))]
        node = root
        for depth, part in enumerate(parts):
            if part == "":
                part = str(len(node))
            if depth == len(parts) - 1:
                if isinstance(node.get(part), dict):
                    raise ApiError.invalid(f"Invalid hash: {raw_key}", param=raw_key)
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise ApiError.invalid(f"Invalid hash: {raw_key}", param=raw_key)
                node = child
    return _listify(root, parent_key=None)


def _listify(node: Any, parent_key: str | None) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v, k) for k, v in node.items()}
    if parent_key != "metadata" and converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


class Params:
    """Typed reads of decoded parameters, with Stripe's error messages and param names.

    Its readers are named after the types they return (``str``, ``int``, ``bool``, ``list``),
    so annotations inside the class spell the built-in types ``builtins.str`` and so on.
    ``required=True`` readers never return None: they raise a missing-parameter error.
    """

    def __init__(self, data: Obj, prefix: builtins.str = "") -> None:
        self.data = data
        self.prefix = prefix

    def name(self, key: builtins.str) -> builtins.str:
        return f"{self.prefix}[{key}]" if self.prefix else key

    def __contains__(self, key: object) -> builtins.bool:
        return key in self.data

    def check(
        self, known: frozenset[builtins.str] | set[builtins.str], supported: set[builtins.str]
    ) -> None:
        """Reject unknown parameters as Stripe does, and known ones the simulator lacks."""
        for key in self.data:
            if key not in known:
                raise ApiError.invalid(
                    f"Received unknown parameter: {self.name(key)}",
                    param=self.name(key),
                    code="parameter_unknown",
                )
            if key not in supported:
                raise ApiError.invalid(
                    f"The Stripe simulator does not implement the parameter {self.name(key)}. "
                    "Extend stripe_simulator if DonorHub needs it.",
                    param=self.name(key),
                    code="parameter_unknown",
                )

    def _scalar(self, key: builtins.str, required: builtins.bool) -> builtins.str | None:
        if key not in self.data or self.data[key] == "":
            if required:
                raise ApiError.invalid(
                    f"Missing required param: {self.name(key)}.",
                    param=self.name(key),
                    code="parameter_missing",
                )
            return None
        value = self.data[key]
        if not isinstance(value, str):
            raise ApiError.invalid(
                f"Invalid string: {self.name(key)} must be a string", param=self.name(key)
            )
        return value

    @overload
    def str(
        self,
        key: builtins.str,
        *,
        required: Literal[True],
        choices: tuple[builtins.str, ...] = (),
        max_length: builtins.int = 5000,
    ) -> builtins.str: ...

    @overload
    def str(
        self,
        key: builtins.str,
        *,
        required: builtins.bool = False,
        choices: tuple[builtins.str, ...] = (),
        max_length: builtins.int = 5000,
    ) -> builtins.str | None: ...

    def str(
        self,
        key: builtins.str,
        *,
        required: builtins.bool = False,
        choices: tuple[builtins.str, ...] = (),
        max_length: builtins.int = 5000,
    ) -> builtins.str | None:
        value = self._scalar(key, required)
        if value is None:
            return None
        if choices and value not in choices:
            options = ", ".join(f"`{c}`" for c in choices)
            raise ApiError.invalid(
                f"Invalid {self.name(key)}: must be one of {options}", param=self.name(key)
            )
        if len(value) > max_length:
            raise ApiError.invalid(
                f"Invalid {self.name(key)}: must be at most {max_length} characters",
                param=self.name(key),
            )
        return value

    @overload
    def int(
        self, key: builtins.str, *, required: Literal[True], minimum: builtins.int | None = None
    ) -> builtins.int: ...

    @overload
    def int(
        self,
        key: builtins.str,
        *,
        required: builtins.bool = False,
        minimum: builtins.int | None = None,
    ) -> builtins.int | None: ...

    def int(
        self,
        key: builtins.str,
        *,
        required: builtins.bool = False,
        minimum: builtins.int | None = None,
    ) -> builtins.int | None:
        value = self._scalar(key, required)
        if value is None:
            return None
        if not re.fullmatch(r"-?\d+", value):
            raise ApiError.invalid(f"Invalid integer: {value}", param=self.name(key))
        number = int(value)
        if minimum is not None and number < minimum:
            raise ApiError.invalid(
                f"Invalid {self.name(key)}: must be greater than or equal to {minimum}",
                param=self.name(key),
            )
        return number

    def bool(self, key: builtins.str) -> builtins.bool | None:
        value = self._scalar(key, False)
        if value is None:
            return None
        if value not in ("true", "false"):
            raise ApiError.invalid(f"Invalid boolean: {value}", param=self.name(key))
        return value == "true"

    @overload
    def sub(self, key: builtins.str, *, required: Literal[True]) -> Params: ...

    @overload
    def sub(self, key: builtins.str, *, required: builtins.bool = False) -> Params | None: ...

    def sub(self, key: builtins.str, *, required: builtins.bool = False) -> Params | None:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                raise ApiError.invalid(
                    f"Missing required param: {self.name(key)}.",
                    param=self.name(key),
                    code="parameter_missing",
                )
            return None
        if not isinstance(value, dict):
            raise ApiError.invalid(f"Invalid object: {self.name(key)}", param=self.name(key))
        return Params(value, self.name(key))

    def list(self, key: builtins.str) -> builtins.list[Any] | None:
        value = self.data.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            raise ApiError.invalid(f"Invalid array: {self.name(key)}", param=self.name(key))
        return value

    def metadata(self, key: builtins.str = "metadata") -> dict[builtins.str, builtins.str] | None:
        """Metadata as given; "" values are kept so that updates can delete keys."""
        value = self.data.get(key)
        if value is None:
            return None
        if value == "":
            return {}
        if not isinstance(value, dict):
            raise ApiError.invalid(f"Invalid object: {self.name(key)}", param=self.name(key))
        if len(value) > 50:
            raise ApiError.invalid(
                "You can only specify up to 50 metadata keys.", param=self.name(key)
            )
        for meta_key, meta_value in value.items():
            if not isinstance(meta_value, str):
                raise ApiError.invalid(
                    f"Invalid value for {self.name(key)}[{meta_key}]: metadata values must be "
                    "strings.",
                    param=f"{self.name(key)}[{meta_key}]",
                )
            if len(meta_key) > 40:
                raise ApiError.invalid(
                    "Metadata keys can have a maximum length of 40 characters.",
                    param=f"{self.name(key)}[{meta_key}]",
                )
            if len(meta_value) > 500:
                raise ApiError.invalid(
                    "Metadata values can have a maximum length of 500 characters.",
                    param=f"{self.name(key)}[{meta_key}]",
                )
        return dict(value)

    @overload
    def url(self, key: builtins.str, *, required: Literal[True]) -> builtins.str: ...

    @overload
    def url(self, key: builtins.str, *, required: builtins.bool = False) -> builtins.str | None: ...

    def url(self, key: builtins.str, *, required: builtins.bool = False) -> builtins.str | None:
        """An http(s) URL, as Stripe checks ``success_url`` and the like."""
        value = self.str(key, required=required, max_length=5000)
        if value is not None and not re.match(r"https?://[^\s/]+", value):
            raise ApiError.invalid(
                f"Not a valid URL: {value}", param=self.name(key), code="url_invalid"
            )
        return value

    def expand(self) -> builtins.list[builtins.str]:
        return [p for p in (self.list("expand") or []) if isinstance(p, str)]


def merge_metadata(current: dict[str, str], update: dict[str, str] | None) -> dict[str, str]:
    """Stripe's update rules: ``metadata=""`` clears, ``metadata[k]=""`` deletes one key."""
    if update is None:
        return current
    if update == {}:
        return {}
    merged = dict(current)
    for key, value in update.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def created_filter(params: Params) -> dict[str, int | None]:
    """``created=<ts>`` or ``created[gte]=<ts>`` and friends; None is no bound."""
    if "created" not in params:
        return {}
    value = params.data["created"]
    if isinstance(value, str):
        exact = params.int("created")
        return {"gte": exact, "lte": exact}
    ranges = params.sub("created", required=True)
    ranges.check({"gt", "gte", "lt", "lte"}, {"gt", "gte", "lt", "lte"})
    return {op: ranges.int(op) for op in ranges.data}


def page_of(
    found: list[Obj],
    limit: int,
    starting_after: str | None,
    ending_before: str | None,
    object_type: str,
) -> tuple[list[Obj], bool]:
    """One page of a list (newest first) by Stripe's cursors: (page, has_more)."""
    if starting_after and ending_before:
        raise ApiError.invalid(
            "You may only specify one of these parameters: ending_before, starting_after.",
            param="ending_before",
        )
    ids = [o["id"] for o in found]
    if starting_after:
        if starting_after not in ids:
            raise ApiError.missing(object_type, starting_after, "starting_after")
        rest = found[ids.index(starting_after) + 1 :]
        return rest[:limit], len(rest) > limit
    if ending_before:
        if ending_before not in ids:
            raise ApiError.missing(object_type, ending_before, "ending_before")
        rest = found[: ids.index(ending_before)]
        return rest[-limit:], len(rest) > limit
    return found[:limit], len(found) > limit
