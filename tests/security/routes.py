"""Walk every route of the app with plausible arguments."""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_ARGUMENTS = {
    "int": "1",
    "default": "sample-token-value-123",
    "path": "css/site.css",
    "string": "sample-token-value-123",
}
#: Routes that exist only under TESTING, to provoke failures on purpose.
TEST_ONLY_PREFIX = "/_testing"


@dataclass(frozen=True)
class Route:
    endpoint: str
    rule: str
    methods: frozenset[str]

    def url(self) -> str:
        url = self.rule
        while "<" in url:
            start, end = url.index("<"), url.index(">")
            converter = url[start + 1 : end].split(":")[0] if ":" in url[start:end] else "default"
            url = url[:start] + SAMPLE_ARGUMENTS.get(converter, "1") + url[end + 1 :]
        return url


def all_routes(app, *, include_test_only: bool = False) -> list[Route]:
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(TEST_ONLY_PREFIX) and not include_test_only:
            continue
        methods = frozenset(rule.methods - {"HEAD", "OPTIONS"})
        routes.append(Route(rule.endpoint, rule.rule, methods))
    return sorted(routes, key=lambda r: r.rule)


def state_changing(app) -> list[Route]:
    return [r for r in all_routes(app) if r.methods & {"POST", "PUT", "PATCH", "DELETE"}]
