"""Request bodies are limited before they are read: 413 on every POST route, except the named
staff upload routes, which have a larger allowance for staff sessions only.

A body the app refuses must not be read at all: these tests hand the app a body stream that
counts what is read from it, and declare its length as a client would.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from flask import request
from werkzeug.datastructures import FileStorage
from werkzeug.test import stream_encode_multipart

from config import DEFAULT_MAX_CONTENT_LENGTH, DEFAULT_MAX_UPLOAD_LENGTH
from donorhub.security import STAFF_UPLOAD_PREFIX, Access, staff, staff_upload
from tests.helpers import csrf_token, sign_in
from tests.metrics import METRICS
from tests.security.routes import all_routes

MB = 1024 * 1024
#: The staff upload routes of the app, by endpoint. None yet: the donor import and the
#: archive export will be the first. Adding one here is a decision, and the test below
#: checks each is staff-only and under the path that nginx gives the larger limit.
STAFF_UPLOAD_ENDPOINTS: set[str] = set()
ROOT = Path(__file__).resolve().parents[2]


class CountingStream(io.RawIOBase):
    """`size` bytes of form data that count how many were read (seekable, so that the test
    client can measure it without reading it)."""

    def __init__(self, size: int) -> None:
        self.size, self.position, self.read_bytes = size, 0, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = {0: offset, 1: self.position + offset, 2: self.size + offset}[whence]
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer) -> int:
        n = max(0, min(len(buffer), self.size - self.position))
        buffer[:n] = b"a" * n
        self.position += n
        self.read_bytes += n
        return n


def post_big(client, url: str, size: int, *, declared: bool = True, **kwargs):
    stream = CountingStream(size)
    overrides = {} if declared else {"CONTENT_LENGTH": "", "wsgi.input_terminated": True}
    response = client.post(
        url,
        input_stream=stream,
        environ_overrides=overrides,
        content_type="application/x-www-form-urlencoded",
        **kwargs,
    )
    return response, stream.read_bytes


def test_the_limits_are_set(app):
    assert app.config["MAX_CONTENT_LENGTH"] == DEFAULT_MAX_CONTENT_LENGTH == 2 * MB
    assert app.config["MAX_UPLOAD_LENGTH"] == DEFAULT_MAX_UPLOAD_LENGTH == 20 * MB


def test_every_post_route_refuses_a_3_mb_body_unread(app, make_user):
    """Walks app.url_map: every route taking POST (test-only routes too), anonymous and as a
    signed-in donor; 413 from the declared length with 0 bytes read."""
    routes = [r for r in all_routes(app, include_test_only=True) if "POST" in r.methods]
    uploads = {
        r.endpoint for r in routes if getattr(app.view_functions[r.endpoint], "staff_upload", False)
    }
    assert uploads == STAFF_UPLOAD_ENDPOINTS
    donor = make_user()
    anonymous, signed_in = app.test_client(), app.test_client()
    assert sign_in(signed_in, donor.email).status_code == 302
    wrong = []
    for route in routes:
        if route.endpoint in uploads:
            continue
        for who, client in (("anonymous", anonymous), ("donor", signed_in)):
            response, read = post_big(client, route.url(), 3 * MB)
            if response.status_code != 413 or read != 0:
                wrong.append((who, route.rule, response.status_code, read))
    assert wrong == []
    assert len(routes) > 40
    METRICS.report(
        "M.1 POST routes walked with a 3 MB body / answered 413 unread",
        f"{len(routes) - len(uploads)} / {len(routes) - len(uploads)}",
    )


def test_a_body_without_a_length_is_cut_off_at_the_limit(app):
    """Chunked bodies have no declared length: Werkzeug stops reading at the limit."""
    response, read = post_big(
        app.test_client(),
        "/stripe/webhook",
        3 * MB,
        declared=False,
        headers={"Stripe-Signature": "t=1,v1=0"},
    )
    assert response.status_code == 413
    assert read <= 2 * MB + 65536


def test_staff_upload_routes_are_staff_only_and_under_the_upload_path(app):
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if getattr(view, "staff_upload", False):
            assert getattr(view, "access", None) is Access.STAFF, rule.endpoint
            assert rule.rule.startswith(STAFF_UPLOAD_PREFIX), rule.rule


def test_a_staff_upload_route_takes_a_larger_body_from_staff_only(app_factory, make_user):
    """The allowance, on a route made for this test: 3 MB is taken from a staff session;
    anonymous and donor sessions still get 413 unread; above MAX_UPLOAD_LENGTH, staff too."""
    app = app_factory(MAX_UPLOAD_LENGTH=4 * MB)

    @staff("admin")
    @staff_upload
    def probe_upload():
        upload = request.files["file"]
        try:
            return {"received": len(upload.read())}
        finally:
            upload.close()

    app.add_url_rule(STAFF_UPLOAD_PREFIX + "probe", "probe_upload", probe_upload, methods=["POST"])
    url = STAFF_UPLOAD_PREFIX + "probe"
    admin = make_user(roles=("admin",))
    donor = make_user()
    clients = {name: app.test_client() for name in ("anonymous", "donor", "admin")}
    sign_in(clients["donor"], donor.email)
    sign_in(clients["admin"], admin.email, totp_secret=admin.totp_secret)

    def upload(client, size: int):
        token = csrf_token(client, "/")
        # Encoded here, so that the temporary file it spools to is closed afterwards.
        body, _length, boundary = stream_encode_multipart(
            {"csrf_token": token, "file": FileStorage(io.BytesIO(b"x" * size), "donors.csv")}
        )
        try:
            return client.post(
                url, input_stream=body, content_type=f'multipart/form-data; boundary="{boundary}"'
            )
        finally:
            body.close()

    response = upload(clients["admin"], 3 * MB)
    assert response.status_code == 200, response.status_code
    assert response.get_json() == {"received": 3 * MB}
    for who in ("anonymous", "donor"):
        response, read = post_big(clients[who], url, 3 * MB)
        assert (response.status_code, read) == (413, 0), who
    response, read = post_big(clients["admin"], url, 4 * MB + 1)
    assert (response.status_code, read) == (413, 0)


def test_deploy_doc_nginx_limits_match_the_app():
    """The nginx block of docs/deploy.md limits bodies as the app does: MAX_CONTENT_LENGTH for
    the site, MAX_UPLOAD_LENGTH under the staff upload path."""
    from tests.system.deploy_doc import nginx_block

    block = nginx_block()
    sizes = re.findall(r"client_max_body_size\s+(\d+)m;", block)
    assert sizes and int(sizes[0]) * MB == DEFAULT_MAX_CONTENT_LENGTH
    upload = re.search(
        r"location \^?~? ?" + re.escape(STAFF_UPLOAD_PREFIX) + r" \{(.*?)\n    \}", block, re.S
    )
    assert upload, "no location for the staff upload path in the nginx block"
    limit = re.search(r"client_max_body_size\s+(\d+)m;", upload.group(1))
    assert limit and int(limit.group(1)) * MB == DEFAULT_MAX_UPLOAD_LENGTH
