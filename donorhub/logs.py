"""JSON-lines logging with a request id, and security events without personal data."""

from __future__ import annotations

import ipaddress
import logging
import re
import sys
from typing import Any

from flask import g, has_request_context, request
from pythonjsonlogger.json import JsonFormatter

security_log = logging.getLogger("donorhub.security")

# Secrets that must never reach a log line, whatever a developer passes in by mistake.
_REDACTIONS = [
    (re.compile(r"(sk|rk|pk)_(test|live)_[A-Za-z0-9]+"), r"\1_\2_[redacted]"),
    (re.compile(r"whsec_[A-Za-z0-9_]+"), "whsec_[redacted]"),
    (re.compile(r"([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^@\s]+@", re.I), r"\1[credentials]@"),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[email]"),
    (
        re.compile(r"(/(?:reset|verify|confirm|unsubscribe|manage)/)[A-Za-z0-9._-]{12,}"),
        r"\1[token]",
    ),
    (re.compile(r"((?:token|password|secret|code)=)[^&\s]+", re.I), r"\1[redacted]"),
    # PostgreSQL's error details quote the values themselves, whatever hide_parameters says.
    (
        re.compile(r"(Key \([^)]*\)=\().*?(\) (?:already exists|is not present|conflicts))"),
        r"\1[redacted]\2",
    ),
    (re.compile(r"(Failing row contains \().*?\)(?=\.?(?:\\n|\n|\s|$))"), r"\1[redacted])"),
]


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def coarse_ip(address: str | None) -> str | None:
    """An IPv4 /24 or IPv6 /48 network: enough to see an attack, not enough to name a person."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


_base_record_factory = logging.getLogRecordFactory()


def _record_with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Every record, whichever handler formats it, carries the request id."""
    record = _base_record_factory(*args, **kwargs)
    record.request_id = getattr(g, "request_id", None) if has_request_context() else None
    upstream = getattr(g, "upstream_request_id", None) if has_request_context() else None
    if upstream:  # a proxy's id, for matching its logs; never shown to anyone
        record.upstream_request_id = upstream
    return record


class RedactingJsonFormatter(JsonFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: str) -> None:
    if logging.getLogRecordFactory() is not _record_with_request_id:
        logging.setLogRecordFactory(_record_with_request_id)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingJsonFormatter(
            "{levelname}{name}{message}{request_id}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="ts",
        )
    )
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not getattr(h, "_donorhub", False)]
    handler._donorhub = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # Werkzeug's access log prints full URLs, which can carry tokens; ours is redacted instead.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def log_security_event(event: str, *, user_id: int | None = None, **fields: Any) -> None:
    """One structured record per security event. Never pass e-mails, names or secrets."""
    ip = coarse_ip(request.remote_addr) if has_request_context() else None
    safe_fields = {
        key: value
        for key, value in fields.items()
        if isinstance(value, int | bool) or (isinstance(value, str) and len(value) <= 64)
    }
    security_log.info(event, extra={"event": event, "user_id": user_id, "ip": ip, **safe_fields})
