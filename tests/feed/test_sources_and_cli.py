"""`flask feed import` and the job, from a drop directory or over HTTP(S)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from donorhub.children.models import Child
from donorhub.extensions import db
from donorhub.feed.jobs import import_feed
from donorhub.feed.models import FeedRun
from tests.feed.builders import Batch, child, crowd


def count_children(app):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Child))


def test_cli_imports_a_file_and_prints_a_summary(app, tmp_path):
    path = tmp_path / "batch.jsonl"
    path.write_bytes(Batch(batch="cli-1").add(*crowd(5), child(age_band="99-100")).bytes())
    result = app.test_cli_runner().invoke(args=["feed", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "cli-1" in result.output and "completed" in result.output
    assert "line 7 age_band:" in result.output
    assert "99-100" not in result.output
    assert count_children(app) == 5
    assert path.exists()  # a file named on the command line is the operator's to keep


def test_cli_keeps_the_files_of_a_folder_it_is_given(app, tmp_path):
    (tmp_path / "one.jsonl").write_bytes(Batch().add(*crowd(5)).bytes())
    result = app.test_cli_runner().invoke(args=["feed", "import", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert count_children(app) == 5
    assert (tmp_path / "one.jsonl").exists()


def test_cli_dry_run_changes_nothing(app, tmp_path):
    path = tmp_path / "batch.jsonl"
    path.write_bytes(Batch().add(*crowd(5)).bytes())
    result = app.test_cli_runner().invoke(args=["feed", "import", str(path), "--dry-run"])
    assert result.exit_code == 0 and "Dry run: nothing was changed." in result.output
    assert count_children(app) == 0
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(FeedRun)) == 0


def test_cli_exits_non_zero_with_a_sentence_for_a_rejected_batch(app, tmp_path):
    path = tmp_path / "batch.jsonl"
    path.write_bytes(Batch().add(child(village="x")).bytes())
    result = app.test_cli_runner().invoke(args=["feed", "import", str(path)])
    assert result.exit_code == 1
    assert "were rejected as a whole; nothing of them was imported." in result.output


def test_job_imports_the_drop_directory_and_deletes_what_it_processed(app_factory, tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a.jsonl").write_bytes(Batch().add(*crowd(5)).bytes())
    (drop / "b.jsonl").write_bytes(Batch().add(child(name="leak")).bytes())
    (drop / "c.jsonl.part").write_bytes(b"still uploading")
    app = app_factory(FEED_DIR=str(drop))
    with app.app_context():
        summary = import_feed()
    assert summary == "2 batch(es): completed, rejected"
    assert sorted(p.name for p in drop.iterdir()) == ["c.jsonl.part"]
    assert count_children(app) == 5


def test_oversized_files_are_rejected_unread(app_factory, tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "big.jsonl").write_bytes(Batch().add(*crowd(5)).bytes())
    app = app_factory(FEED_DIR=str(drop), FEED_MAX_BYTES=100)
    with app.app_context():
        assert import_feed() == "1 batch(es): rejected"
        run = db.session.scalar(select(FeedRun))
        assert run.reason == "The file is larger than 100 bytes."


@pytest.fixture
def partner_server():
    batch = Batch(batch="over-http").add(*crowd(5)).bytes()
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.headers.get("Authorization"))
            if self.headers.get("Authorization") != "Bearer partner-token-123":
                self.send_response(401)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.end_headers()
            self.wfile.write(batch)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/feed.jsonl", seen
    server.shutdown()
    server.server_close()


def test_job_fetches_with_the_bearer_token(app_factory, partner_server):
    url, seen = partner_server
    app = app_factory(FEED_URL=url, FEED_TOKEN="partner-token-123")
    with app.app_context():
        assert import_feed() == "1 batch(es): completed"
        assert import_feed() == "1 batch(es): already imported"
    assert seen == ["Bearer partner-token-123"] * 2
    assert count_children(app) == 5


def test_a_refused_fetch_is_a_clear_error(app_factory, partner_server):
    url, _ = partner_server
    app = app_factory(FEED_URL=url, FEED_TOKEN="wrong")
    result = app.test_cli_runner().invoke(args=["feed", "import"])
    assert result.exit_code == 1
    assert "The feed could not be fetched (HTTPError)." in result.output


def officer_alerts(app):
    from donorhub.mail.models import OutboxMessage

    with app.app_context():
        return [m.text_body for m in db.session.scalars(select(OutboxMessage))]


def test_the_rejection_alert_says_a_file_named_on_the_command_line_was_kept(
    app, tmp_path, make_user
):
    make_user(roles=("safeguarding_officer",))
    path = tmp_path / "batch.jsonl"
    path.write_bytes(Batch().add(*crowd(5), child(village="x")).bytes())
    result = app.test_cli_runner().invoke(args=["feed", "import", str(path)])
    assert result.exit_code == 1
    assert path.exists()
    [alert] = officer_alerts(app)
    assert "deleted" not in alert and "deleted" not in result.output
    assert "The file was kept where it was given on the command line" in alert
    assert "delete it" in alert and "delete it" in result.output


def test_the_rejection_alert_says_a_drop_directory_file_was_deleted(
    app_factory, tmp_path, make_user
):
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "leak.jsonl").write_bytes(Batch().add(*crowd(5), child(village="x")).bytes())
    make_user(roles=("safeguarding_officer",))  # on this test's database, like the app below
    app = app_factory(FEED_DIR=str(drop))
    with app.app_context():
        assert import_feed() == "1 batch(es): rejected"
    assert list(drop.iterdir()) == []
    [alert] = officer_alerts(app)
    assert "Nothing was imported and the file was deleted." in alert
    assert "kept" not in alert
