"""Absolute links for e-mails, built from PUBLIC_BASE_URL, in a request or in a job."""

from __future__ import annotations

import re
from typing import Any

from flask import current_app, has_request_context, request, url_for
from werkzeug.routing import Rule


def external_url(endpoint: str, **values: Any) -> str:
    """Never from the request's Host header; works in jobs too, which have no request."""
    if has_request_context():
        path = url_for(endpoint, **values)
    else:
        with current_app.test_request_context("/"):
            path = url_for(endpoint, **values)
    return current_app.config["PUBLIC_BASE_URL"] + path


#: Names of URL variables and query parameters that carry a secret (a bearer capability):
#: `<token>`, `?session_id=`, `<key>`, a `code`... Matched on whole words of the name.
SECRET_NAME = re.compile(
    r"(?:^|_)(?:token|key|code|secret|signature|session_id|nonce|ref|public_id)(?:$|_)")


def secret_parameters(rule: Rule) -> set[str]:
    """The variables of a route whose values are secrets, by their names."""
    return {name for name in rule.arguments if SECRET_NAME.search(name)}


def carries_secret() -> bool:
    """Whether the current request's address holds a secret: in its path (a token-like
    variable of the matched route) or in its query string. Such pages are never stored by a
    cache and never send their address on as a Referer."""
    rule = request.url_rule
    if rule is not None and secret_parameters(rule):
        return True
    return any(SECRET_NAME.search(name) for name in request.args)
