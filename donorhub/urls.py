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
    r"(?:^|_)(?:token|key|code|secret|signature|session_id|nonce|ref|public_id)(?:$|_)"
)


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


#: A secret's value in a link: long, and made of URL-safe characters (tokens are 16+).
_LONG_VALUE = r"[A-Za-z0-9_.~%=-]{16,}"
_VARIABLE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_QUERY_VALUE = re.compile(r"([?&](?:amp;)?)([A-Za-z_]{1,40})=([^&#\s\"'<>]+)")
HIDDEN = "[hidden]"


def _secret_link_patterns() -> list[re.Pattern[str]]:
    """One pattern per route with a secret in its path, up to that secret: the links in a
    mail that act as a key (sign-in, reset, plan management, unsubscribe...)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    cached = app.extensions.get("donorhub_secret_links")
    if cached is not None:
        return cached
    patterns = []
    for rule in app.url_map.iter_rules():
        secret = secret_parameters(rule)
        if not secret:
            continue
        parts = _VARIABLE.split(rule.rule)  # static, name, static, name, ..., static
        regex, last = "", max(i for i in range(1, len(parts), 2) if parts[i] in secret)
        for index, part in enumerate(parts[: last + 1]):
            if index % 2 == 0:
                regex += re.escape(part)
            elif part in secret:
                regex += f"({_LONG_VALUE})"
            else:
                regex += r"[^/?#\s\"'<>]+"
        patterns.append(re.compile(regex))
    app.extensions["donorhub_secret_links"] = patterns
    return patterns


def mask_secrets(text: str | None) -> str | None:
    """The text with the secret of every key-like link hidden (path or query string)."""
    if not text:
        return text
    for pattern in _secret_link_patterns():
        text = pattern.sub(_hide_groups, text)
    return _QUERY_VALUE.sub(
        lambda m: (
            m.group(1)
            + m.group(2)
            + "="
            + (HIDDEN if SECRET_NAME.search(m.group(2)) else m.group(3))
        ),
        text,
    )


def _hide_groups(match: re.Match[str]) -> str:
    whole, start = match.group(0), match.start(0)
    for group in range(match.re.groups, 0, -1):
        begin, end = match.span(group)
        whole = whole[: begin - start] + HIDDEN + whole[end - start :]
    return whole


def holds_secret(*texts: str | None) -> bool:
    """Whether any of the texts carries a key-like link."""
    return any(text and mask_secrets(text) != text for text in texts)
