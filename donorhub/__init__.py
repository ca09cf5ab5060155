"""DonorHub: donations and child sponsorship for a charity that rescues and cares for children."""

from __future__ import annotations

import functools
import os
from typing import Any

from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_qualified_name
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Config, config_for_environment


class DonorHubFlask(Flask):
    """Flask, remembering which hooks and views are plain functions. Flask asks
    `ensure_sync` about every hook, context processor and view of every request, and each
    answer inspects the function again; the answer never changes for a function."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._known_sync: set[Any] = set()

    def ensure_sync(self, func: Any) -> Any:
        try:
            if func in self._known_sync:
                return func
        except TypeError:  # unhashable: ask Flask every time
            return super().ensure_sync(func)
        made = super().ensure_sync(func)
        if made is func and len(self._known_sync) < 10_000:
            self._known_sync.add(func)
        return made


def create_app(config_class: type[Config] | None = None, **overrides: Any) -> Flask:
    """Build the app: configuration, extensions, blueprints, CLI, error handlers."""
    config_class = config_class or config_for_environment()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    app = DonorHubFlask(
        __name__,
        template_folder=os.path.join(root, "templates"),
        static_folder=os.path.join(root, "static"),
        instance_path=os.environ.get("DONORHUB_INSTANCE_DIR", os.path.join(root, "instance")),
    )
    app.config.from_object(config_class)
    app.config.update(overrides)
    config_class.check(app.config)
    from donorhub import park_for_kill

    park_for_kill.install(app)  # test-only kill points; nothing unless DONORHUB_TEST_PARK_AT
    os.makedirs(app.instance_path, exist_ok=True)

    from donorhub.logs import configure_logging

    configure_logging(app.config["LOG_LEVEL"])
    if app.config["PROXY_COUNT"]:
        count = app.config["PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=0)  # type: ignore[method-assign]
    from donorhub import security

    # First of all hooks, so that even a CSRF failure is logged with its request id.
    app.before_request(security.assign_request_id)
    # Then, before anything reads a body (CSRF, forms, the webhook): too large is 413.
    app.before_request(security.refuse_large_bodies)
    register_extensions(app)
    register_blueprints(app)
    register_cli(app)
    register_wiring(app)
    register_templates(app)

    from donorhub.errors import register_error_handlers

    security.init_app(app)
    register_error_handlers(app)
    from donorhub import commit_point

    commit_point.init_app(app)
    return app


def register_extensions(app: Flask) -> None:
    from flask_login import user_loaded_from_cookie

    from donorhub.accounts.services import load_user_from_id
    from donorhub.extensions import csrf, db, limiter, login_manager, migrate
    from donorhub.payments import gateway as payments_gateway
    from donorhub.security import stamp_session

    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"))
    csrf.init_app(app)
    limiter.init_app(app)
    check_rate_limits_on_limited_routes_only(app, limiter)
    login_manager.init_app(app)
    login_manager.login_view = "accounts.sign_in"
    login_manager.login_message = "Please sign in to see that page."
    login_manager.session_protection = "basic"
    login_manager.user_loader(load_user_from_id)
    payments_gateway.init_app(app)

    @user_loaded_from_cookie.connect_via(app)
    def restart_session_clock(_sender, user):
        stamp_session()

    # Import every model so that metadata (and Alembic) sees the whole schema.
    import donorhub.models  # noqa: F401


def check_rate_limits_on_limited_routes_only(app: Flask, limiter: Limiter) -> None:
    """Flask-Limiter's before-request hook resolves the limits of every request. DonorHub
    sets no default, application, meta or blueprint limits (each sensitive route names its
    own, and its decorator checks them), so on every other route the hook finds nothing to
    count. It is kept, unchanged, for the routes marked for limiting, and for every route
    the moment any limit reaches beyond a route's own decorator."""
    hooks = app.before_request_funcs[None]
    check = limiter._check_request_limit
    if check not in hooks:  # limiting switched off (RATELIMIT_ENABLED): no hook to narrow
        return
    position = hooks.index(check)
    marked: set[str] = limiter._marked_for_limiting
    manager = limiter.limit_manager
    reaches_every_route: list[bool] = []

    def check_request_limit() -> None:
        if not reaches_every_route:  # decided at the first request, once every route is wired
            reaches_every_route.append(
                bool(
                    manager.default_limits
                    or manager.application_limits
                    or manager._blueprint_limits
                    or limiter._meta_limits
                    or limiter._in_memory_fallback
                )
            )
        endpoint = request.endpoint or ""
        view = app.view_functions.get(endpoint)
        if (
            reaches_every_route[0]
            or (view is not None and get_qualified_name(view) in marked)
            or manager.has_hints(endpoint)
        ):
            check()

    hooks[position] = check_request_limit
    skip_limiter_hooks_when_unused(app, limiter)


def skip_limiter_hooks_when_unused(app: Flask, limiter: Limiter) -> None:
    """Flask-Limiter's after-request hook (its headers, conditional deductions) and its
    teardown (resetting its state) read the state a limit check leaves on the request. A
    request that no check touched has none (Flask-Limiter creates it on first use), so both
    would only create it to find it empty: they run when it exists."""
    from flask.globals import request_ctx

    def belongs_to_limiter(hook: Any) -> bool:
        owner = getattr(hook, "__self__", None)
        partial_args: tuple[Any, ...] = getattr(hook, "args", ())
        return owner is limiter or (len(partial_args) > 0 and partial_args[0] is limiter)

    def when_used(hook: Any) -> Any:
        @functools.wraps(hook)
        def run_if_limiter_was_used(argument: Any) -> Any:
            if hasattr(request_ctx, "_limiter_request_context"):
                return hook(argument)
            return argument

        return run_if_limiter_was_used

    for registry in (app.after_request_funcs, app.teardown_request_funcs):
        hooks = registry.get(None, [])
        for index, hook in enumerate(hooks):
            if belongs_to_limiter(hook):
                hooks[index] = when_used(hook)


def register_blueprints(app: Flask) -> None:
    """Every feature's blueprints. A package's `__init__.py` defines `bp` (and `staff_bp`
    for its staff pages); importing its views module adds the routes."""
    from donorhub import accounts, campaigns, donations, main, payments, sponsorship, staff, updates
    from donorhub.accounts import views as _accounts_views  # noqa: F401
    from donorhub.campaigns import views as _campaigns_views  # noqa: F401
    from donorhub.donations import views as _donations_views  # noqa: F401
    from donorhub.main import impact_views as _impact_views  # noqa: F401
    from donorhub.main import views as _main_views  # noqa: F401
    from donorhub.payments import webhooks as _payments_webhooks  # noqa: F401
    from donorhub.sponsorship import views as _sponsorship_views  # noqa: F401
    from donorhub.staff import views as _staff_views  # noqa: F401
    from donorhub.updates import views as _updates_views  # noqa: F401

    blueprints = [
        main.bp,
        accounts.bp,
        staff.bp,
        sponsorship.bp,
        sponsorship.staff_bp,
        updates.bp,
        campaigns.bp,
        campaigns.staff_bp,
        donations.bp,
        donations.staff_bp,
        payments.bp,
    ]
    if app.config.get("TESTING"):
        from donorhub import testing_routes

        blueprints.append(testing_routes.bp)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)


def register_wiring(app: Flask) -> None:
    """Lookups a lower package needs from a higher one, handed down here."""
    from donorhub.children.services import FULLY_SPONSORED
    from donorhub.sponsorship.services import fully_sponsored_child_ids

    app.extensions[FULLY_SPONSORED] = fully_sponsored_child_ids


def register_cli(app: Flask) -> None:
    from donorhub.accounts.cli import accounts_cli
    from donorhub.children.cli import children_cli
    from donorhub.demo.cli import demo_cli
    from donorhub.feed.cli import feed_cli
    from donorhub.jobs.cli import jobs_cli
    from donorhub.payments.cli import payments_cli

    app.cli.add_command(accounts_cli)
    app.cli.add_command(children_cli)
    app.cli.add_command(demo_cli)
    app.cli.add_command(feed_cli)
    app.cli.add_command(jobs_cli)
    app.cli.add_command(payments_cli)


def register_templates(app: Flask) -> None:
    from flask_login import current_user

    from donorhub.accounts.models import StaffRole
    from donorhub.money import format_money, plain_amount

    # Filters every feature's templates use: registered here, not by whichever feature
    # happens to be wired first.
    app.add_template_filter(format_money, "money")
    app.add_template_filter(plain_amount, "plain_amount")

    # Globals every template sees, set once: the charity's name and number are settings,
    # and current_user is Flask-Login's proxy (it reads the request's user when used), so
    # none of them needs a context processor building a dict on every render.
    app.jinja_env.globals.update(
        charity_name=app.config["CHARITY_NAME"],
        charity_registration=app.config["CHARITY_REGISTRATION"],
        StaffRole=StaffRole,
        current_user=current_user,
    )
