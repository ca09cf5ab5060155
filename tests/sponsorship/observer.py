"""An outside observer of the public pages: snapshots of everything an anonymous visitor can
see of the children, and diffs between two snapshots.

A snapshot holds every public page that can show child data: the /sponsor listing unfiltered
and under every filter value it offers, every profile page (of the cards shown, and of any
token the caller knows, e.g. of children who must stay hidden), "Match me" for no filter and
for each filter value, the home page and the impact page. Pages are reduced to what a reader
sees: the cards (alias, illustration, each line of text, in page order) and each page's
visible text lines. Attributes that change on every request (CSRF tokens, CSP nonces) are not
text, so they never enter a snapshot.

A diff lists what changed between two snapshots, card by card. `canonical` turns a diff into
an identity-free form (the cards that changed become "{X}"), so that the diffs of two
different events can be compared: if an exit and a sponsorship give the same canonical diff,
an observer cannot tell them apart.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urlsplit

from donorhub.children.release import STAGE_TEXT, STAGE_WIDE
from tests.metrics import METRICS

FILTERS = ("age", "region", "stage", "interest")
_TOKEN_HREF = re.compile(r"^/sponsor/([A-Za-z0-9_-]{20,})$")
_SPONSORED = re.compile(r"\bsponsored\b", re.IGNORECASE)
#: Lines that speak of sponsoring (the call to action, "sponsored") are not facts of a child.
_ABOUT_SPONSORING = re.compile(r"sponsor", re.IGNORECASE)

_BLOCK = frozenset(
    "address article aside blockquote button dd details div dl dt fieldset figcaption figure "
    "footer form h1 h2 h3 h4 h5 h6 header label legend li main nav ol option p section select "
    "summary table td th title tr ul br".split()
)
_SKIP = frozenset({"script", "style", "template"})


# Parsing ------------------------------------------------------------------------------------


@dataclass
class _RawCard:
    lines: list[str] = field(default_factory=list)
    heading: str | None = None
    hrefs: list[str] = field(default_factory=list)
    art: str | None = None


class _PageParser(HTMLParser):
    """Visible text lines, profile cards, links, forms and the filter options of one page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        #: Lines of the profile's sponsoring panel (the call to sponsor, or "has a sponsor").
        self.panel_lines: list[str] = []
        self.cards: list[_RawCard] = []
        self.links: list[str] = []
        self.forms: list[str] = []
        self.options: dict[str, list[str]] = {}
        #: The listing's link to its next page, if any.
        self.next_page: str | None = None
        self._buffer: list[str] = []
        self._skip = 0
        self._card: _RawCard | None = None
        self._card_depth = 0
        self._heading = False
        self._heading_text: list[str] = []
        self._select: str | None = None
        self._panel_depth = 0

    def _flush(self) -> None:
        text = " ".join("".join(self._buffer).split())
        self._buffer = []
        if text:
            self.lines.append(text)
            if self._panel_depth:
                self.panel_lines.append(text)
            if self._card is not None:
                self._card.lines.append(text)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag in _SKIP:
            self._skip += 1
            return
        if tag in _BLOCK:
            self._flush()
        if tag == "section" and (
            self._panel_depth or "panel" in (attributes.get("class") or "").split()
        ):
            self._panel_depth += 1
        if tag == "article" and "profile-card" in (attributes.get("class") or "").split():
            self._card = _RawCard()
            self._card_depth = 1
        elif tag == "article" and self._card is not None:
            self._card_depth += 1
        if tag in ("h1", "h2", "h3", "h4") and self._card is not None:
            self._heading, self._heading_text = True, []
        if tag == "a" and attributes.get("href"):
            self.links.append(attributes["href"])
            if "next" in (attributes.get("rel") or "").split():
                self.next_page = attributes["href"]
            if self._card is not None:
                self._card.hrefs.append(attributes["href"])
        if tag == "img" and self._card is not None and self._card.art is None:
            self._card.art = attributes.get("src")
        if tag in ("form", "button") and (attributes.get("action") or attributes.get("formaction")):
            self.forms.append(attributes.get("action") or attributes.get("formaction") or "")
        if tag == "select":
            self._select = attributes.get("name")
        if tag == "option" and self._select and attributes.get("value"):
            self.options.setdefault(self._select, []).append(attributes["value"] or "")

    def handle_endtag(self, tag):
        if tag in _SKIP:
            self._skip = max(self._skip - 1, 0)
            return
        if tag in _BLOCK:
            self._flush()
        if tag == "section" and self._panel_depth:
            self._panel_depth -= 1
        if tag in ("h1", "h2", "h3", "h4") and self._heading and self._card is not None:
            self._card.heading = " ".join("".join(self._heading_text).split())
            self._heading = False
        if tag == "select":
            self._select = None
        if tag == "article" and self._card is not None:
            self._card_depth -= 1
            if self._card_depth == 0:
                self.cards.append(self._card)
                self._card = None

    def handle_data(self, data):
        if self._skip:
            return
        self._buffer.append(data)
        if self._heading:
            self._heading_text.append(data)

    def close(self):
        super().close()
        self._flush()


def _parse(body: str) -> _PageParser:
    parser = _PageParser()
    parser.feed(body)
    parser.close()
    return parser


def _replace_alias(text: str, alias: str) -> str:
    return re.sub(rf"(?<![\w-]){re.escape(alias)}(?![\w-])", "{alias}", text)


# The reduced pages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    """One card of the listing, as a reader sees it. Lines have the alias as "{alias}"."""

    alias: str
    token: str | None
    art: str | None
    lines: tuple[str, ...]

    @property
    def state(self) -> str:
        return "sponsored" if any(_SPONSORED.search(line) for line in self.lines) else "open"

    @property
    def facts(self) -> tuple[str, ...]:
        return tuple(line for line in self.lines if not _ABOUT_SPONSORING.search(line))


@dataclass(frozen=True)
class Profile:
    """One /sponsor/<token> page: its status, visible lines (alias as "{alias}") and the
    links and forms that point at the child (token as "{token}")."""

    status: int
    alias: str | None
    lines: tuple[str, ...]
    actions: tuple[str, ...]
    #: The lines of the sponsoring panel: how to sponsor her, or that she has a sponsor.
    panel: tuple[str, ...] = ()

    @property
    def state(self) -> str:
        if self.status != 200:
            return "gone"
        if any("{token}" in action for action in self.actions):
            return "open"
        return "sponsored"

    @property
    def facts(self) -> tuple[str, ...]:
        """Everything the page says but the sponsoring panel and lines about sponsoring."""
        panel = set(self.panel)
        return tuple(
            line for line in self.lines if line not in panel and not _ABOUT_SPONSORING.search(line)
        )


@dataclass(frozen=True)
class Match:
    """Where "Match me" sent the visitor: a profile (its token), or "no match"."""

    outcome: str  # "profile", "no_match" or "other"
    token: str | None = None


@dataclass
class Snapshot:
    listing: tuple[Card, ...]
    options: dict[str, tuple[str, ...]]
    filtered: dict[tuple[str, str], tuple[Card, ...]]
    profiles: dict[str, Profile]  # by token
    matches: dict[tuple[str, str] | None, Match]
    static: dict[str, tuple[str, ...]]
    #: Every page's body as served, for searches for text that must never be public.
    bodies: dict[str, str]

    @property
    def aliases(self) -> set[str]:
        shown = {card.alias for card in self.listing}
        for cards in self.filtered.values():
            shown |= {card.alias for card in cards}
        shown |= {p.alias for p in self.profiles.values() if p.status == 200 and p.alias}
        return shown

    def card(self, alias: str) -> Card | None:
        return next((c for c in self.listing if c.alias == alias), None)

    def token_of(self, alias: str) -> str | None:
        for token, profile in self.profiles.items():
            if profile.alias == alias:
                return token
        card = self.card(alias)
        return card.token if card else None

    def visible_text(self) -> str:
        return "\n".join(self.bodies.values())


def _cards(parser: _PageParser) -> tuple[Card, ...]:
    cards = []
    for raw in parser.cards:
        alias = raw.heading or ""
        token = None
        for href in raw.hrefs:
            found = _TOKEN_HREF.match(urlsplit(href).path)
            if found:
                token = found.group(1)
                break
        lines = tuple(_replace_alias(line, alias) for line in raw.lines) if alias else ()
        cards.append(Card(alias, token, raw.art, lines))
    return tuple(cards)


def _profile(status: int, body: str, token: str) -> Profile:
    if status != 200:
        return Profile(status, None, (), ())
    parser = _parse(body)
    alias = _first_heading(body)

    def named(lines: list[str]) -> tuple[str, ...]:
        return tuple(_replace_alias(line, alias) if alias else line for line in lines)

    actions = tuple(
        sorted({a.replace(token, "{token}") for a in (*parser.links, *parser.forms) if token in a})
    )
    return Profile(status, alias, named(parser.lines), actions, named(parser.panel_lines))


class _FirstHeading(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.inside = False
        self.text: list[str] = []
        self.done = False

    def handle_starttag(self, tag, attrs):
        if tag == "h1" and not self.done:
            self.inside = True

    def handle_endtag(self, tag):
        if tag == "h1" and self.inside:
            self.inside, self.done = False, True

    def handle_data(self, data):
        if self.inside:
            self.text.append(data)


def _first_heading(body: str) -> str | None:
    """A profile's first heading: the child's alias."""
    parser = _FirstHeading()
    parser.feed(body)
    return " ".join("".join(parser.text).split()) or None


def _match(response) -> Match:
    if response.status_code != 302:
        return Match("other")
    location = urlsplit(response.headers["Location"])
    if parse_qs(location.query).get("no_match") == ["1"]:
        return Match("no_match")
    found = _TOKEN_HREF.match(location.path)
    return Match("profile", found.group(1)) if found else Match("other")


def take_snapshot(client, known_tokens: Iterable[str] = ()) -> Snapshot:
    """Every public page that can show child data, as an anonymous visitor sees it.

    `known_tokens` are profile tokens to request as well as those of the cards shown (an
    observer may have kept a token from an earlier visit)."""
    bodies: dict[str, str] = {}
    requests = 0

    def get(url: str, keep: bool = True):
        nonlocal requests
        requests += 1
        response = client.get(url)
        if keep:
            bodies[url] = response.get_data(as_text=True)
        return response

    def every_page(url: str) -> tuple[_PageParser, tuple[Card, ...]]:
        """The listing at `url` and all the pages after it: the first page and every card."""
        response = get(url)
        assert response.status_code == 200, response.status_code
        first = page = _parse(bodies[url])
        cards = _cards(page)
        while page.next_page is not None:
            url = page.next_page
            assert url not in bodies, f"the pages of the listing loop back to {url}"
            response = get(url)
            assert response.status_code == 200, response.status_code
            page = _parse(bodies[url])
            cards += _cards(page)
        return first, cards

    page, listing = every_page("/sponsor")
    options = {name: tuple(page.options.get(name, ())) for name in FILTERS}
    filtered: dict[tuple[str, str], tuple[Card, ...]] = {}
    matches: dict[tuple[str, str] | None, Match] = {}
    matches[None] = _match(get("/sponsor/match", keep=False))
    for name, values in options.items():
        for value in values:
            query = urlencode({name: value})
            filtered[(name, value)] = every_page(f"/sponsor?{query}")[1]
            matches[(name, value)] = _match(get(f"/sponsor/match?{query}", keep=False))
    tokens = {c.token for c in listing if c.token}
    for cards in filtered.values():
        tokens |= {c.token for c in cards if c.token}
    tokens |= {m.token for m in matches.values() if m.token}
    tokens |= set(known_tokens)
    profiles = {}
    for token in sorted(tokens):
        response = get(f"/sponsor/{token}")
        profiles[token] = _profile(response.status_code, bodies[f"/sponsor/{token}"], token)
    static = {}
    for url in ("/", "/impact"):
        get(url)
        static[url] = tuple(_parse(bodies[url]).lines)
    METRICS.tally("observer: snapshots / public pages snapshotted", snapshots=1, pages=requests)
    return Snapshot(listing, options, filtered, profiles, matches, static, bodies)


# Diffs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One difference: `page` ("listing", "filter age=...", "profile", "options", "match",
    "home" ...), the card it concerns (`alias`, None for the page as a whole), `kind`, and
    what it was and became (identity-free where it can be)."""

    page: str
    alias: str | None
    kind: str
    before: object = None
    after: object = None


def _cards_diff(page: str, before: tuple[Card, ...], after: tuple[Card, ...]) -> list[Change]:
    changes: list[Change] = []
    old = {c.alias: c for c in before}
    new = {c.alias: c for c in after}
    for alias in old.keys() - new.keys():
        changes.append(Change(page, alias, "removed", old[alias].state))
    for alias in new.keys() - old.keys():
        changes.append(Change(page, alias, "added", None, new[alias].state))
    changed = set(old.keys() ^ new.keys())
    for alias in old.keys() & new.keys():
        a, b = old[alias], new[alias]
        if a.state != b.state:
            changes.append(Change(page, alias, "state", a.state, b.state))
        if a.facts != b.facts:
            changes.append(Change(page, alias, "facts", a.facts, b.facts))
        if a.art != b.art:
            changes.append(Change(page, alias, "art", a.art, b.art))
        if a.lines != b.lines:
            changed.add(alias)
    order_before = [c.alias for c in before]
    order_after = [c.alias for c in after]
    stayed_before = [a for a in order_before if a in new and a not in changed]
    stayed_after = [a for a in order_after if a in old and a not in changed]
    if stayed_before != stayed_after:
        changes.append(Change(page, None, "order of unchanged cards"))
    for alias in changed & old.keys() & new.keys():
        i, j = order_before.index(alias), order_after.index(alias)
        if i != j:
            where = "first" if j == 0 else "last" if j == len(order_after) - 1 else "elsewhere"
            changes.append(Change(page, alias, "moved", None, where))
    return changes


def diff(before: Snapshot, after: Snapshot) -> list[Change]:
    """Everything that differs between two snapshots, card by card and page by page."""
    changes = _cards_diff("listing", before.listing, after.listing)
    for name in FILTERS:
        old, new = set(before.options[name]), set(after.options[name])
        changes += [Change("options", None, "option removed", f"{name}={v}") for v in old - new]
        changes += [Change("options", None, "option added", None, f"{name}={v}") for v in new - old]
    for key in before.filtered.keys() & after.filtered.keys():
        page = f"filter {key[0]}={key[1]}"
        changes += _cards_diff(page, before.filtered[key], after.filtered[key])
    for token in before.profiles.keys() | after.profiles.keys():
        a, b = before.profiles.get(token), after.profiles.get(token)
        if a is None or b is None:
            continue  # asked in one snapshot only: nothing to compare
        alias = a.alias or b.alias
        if a.status != b.status:
            changes.append(Change("profile", alias, "status", a.status, b.status))
        if a.state != b.state:
            changes.append(Change("profile", alias, "state", a.state, b.state))
        if a.status == b.status == 200 and a.facts != b.facts:
            changes.append(Change("profile", alias, "facts", a.facts, b.facts))
        if a.alias and b.alias and a.alias != b.alias:
            changes.append(Change("profile", alias, "alias", a.alias, b.alias))
    for key in before.matches.keys() & after.matches.keys():
        a_match, b_match = before.matches[key], after.matches[key]
        if a_match.outcome != b_match.outcome:
            page = "match" if key is None else f"match {key[0]}={key[1]}"
            changes.append(Change(page, None, "outcome", a_match.outcome, b_match.outcome))
    for url in before.static.keys() | after.static.keys():
        if before.static.get(url) != after.static.get(url):
            changes.append(Change(url, None, "text changed"))
    METRICS.tally("observer: diffs compared", diffs=1)
    return changes


def subjects(changes: Iterable[Change]) -> set[str]:
    """The cards a diff concerns."""
    return {c.alias for c in changes if c.alias}


def canonical(changes: Iterable[Change]) -> list[tuple]:
    """The diff without the identity of the cards that changed: each becomes "{X}" (numbered
    by the order of their first change, when several did)."""
    changes = list(changes)
    names: dict[str, str] = {}
    for change in sorted(changes, key=lambda c: (c.page, c.kind, str(c.before), str(c.after))):
        if change.alias and change.alias not in names:
            names[change.alias] = "{X}" if not names else f"{{X{len(names) + 1}}}"
    return sorted(
        (c.page, names.get(c.alias or "", None) or "", c.kind, repr(c.before), repr(c.after))
        for c in changes
    )


# What may change between two publications ----------------------------------------------------


def only_open_to_sponsored(before: Snapshot, after: Snapshot) -> set[str]:
    """Check that the only change from `before` to `after` is cards turning from open to
    "sponsored" (with every fact unchanged), and return those cards' aliases.

    A card that turned may leave a filtered listing or move (if sponsored cards are shown
    elsewhere), its profile may close, a filter value only such cards carried may go, and
    "Match me" may find nobody where only such cards fitted. Anything else fails: a card
    that appears, disappears, changes a fact, or moves among the others."""
    changes = diff(before, after)
    turned = {
        c.alias
        for c in changes
        if c.page == "listing"
        and c.kind == "state"
        and (c.before, c.after) == ("open", "sponsored")
    }
    unexplained = []
    for change in changes:
        if change.alias is not None and change.alias in turned:
            allowed = (
                (change.kind == "state" and (change.before, change.after) == ("open", "sponsored"))
                or (change.kind == "removed" and change.page.startswith("filter "))
                or change.kind == "moved"
                or (
                    change.page == "profile"
                    and change.kind in ("status", "state")
                    and change.after in ("sponsored", "gone", 404, 410)
                )
            )
        elif change.kind == "option removed":
            name, value = str(change.before).split("=", 1)
            carriers = {c.alias for c in before.filtered.get((name, value), ())}
            allowed = carriers <= turned
        elif change.page.startswith("match") and change.kind == "outcome":
            allowed = (change.before, change.after) == ("profile", "no_match")
        else:
            allowed = False
        if not allowed:
            unexplained.append(change)
    assert not unexplained, "a change other than open -> sponsored:\n" + "\n".join(
        map(repr, unexplained)
    )
    return turned


# Checks on one snapshot --------------------------------------------------------------------


def check_consistency(snapshot: Snapshot) -> None:
    """Every page tells the same story: a "sponsored" card's profile offers no way to sponsor
    and an open card's profile does; "Match me" sends to an open card that fits the choice,
    and says "no match" only when no open card fits."""
    for card in snapshot.listing:
        profile = snapshot.profiles.get(card.token or "")
        if card.state == "open":
            assert profile is not None and profile.state == "open", f"{card.alias}: {profile}"
        else:
            assert profile is None or profile.state != "open", f"{card.alias} can be chosen"
    for key, result in snapshot.matches.items():
        cards = snapshot.listing if key is None else snapshot.filtered[key]
        open_tokens = {c.token for c in cards if c.state == "open"}
        if result.outcome == "profile":
            assert result.token in open_tokens, f"match me {key} sent to a card not open"
        else:
            assert result.outcome == "no_match" and not open_tokens, f"match me {key}: {result}"


def _said_of(snapshot: Snapshot, card: Card) -> tuple[str, ...]:
    profile = snapshot.profiles.get(card.token or "")
    return card.facts + (profile.facts if profile and profile.status == 200 else ())


def description(snapshot: Snapshot, card: Card, common: frozenset[str] = frozenset()) -> tuple:
    """What the pages say of one shown child, without her identity and whether she is open
    or sponsored: the attributes her card and profile state, and every other line they show
    that is not on every child's pages (`common`: the site's own words), such as free text."""
    lines = _said_of(snapshot, card)
    known = (_SUMMARY, _ENJOYS, _JOINED)
    other = frozenset(
        line
        for line in lines
        if line not in common and line != "{alias}" and not any(p.match(line) for p in known)
    )
    return (tuple(sorted(facts_of(lines).items(), key=lambda item: item[0])), other)


def shown_classes(snapshot: Snapshot) -> Counter:
    """How many shown children share each description (`description`), open and sponsored
    cards alike."""
    said = [frozenset(_said_of(snapshot, card)) for card in snapshot.listing]
    common = frozenset.intersection(*said) if said else frozenset()
    return Counter(description(snapshot, card, common) for card in snapshot.listing)


def assert_k_anonymous(snapshot: Snapshot, k: int) -> None:
    small = {key: n for key, n in shown_classes(snapshot).items() if n < k}
    assert not small, f"{len(small)} shown classes below {k}: " + "; ".join(
        f"{n} x {dict(key[0])} {sorted(key[1])}" for key, n in small.items()
    )


def assert_not_shown(snapshot: Snapshot, tokens: Iterable[str], aliases: Iterable[str]) -> None:
    """None of these children is on any public page: not their token, not their alias as a
    card or a profile, not their alias anywhere in the text."""
    text = snapshot.visible_text()
    for token in tokens:
        assert token not in text, "a hidden child's token is on a public page"
        profile = snapshot.profiles.get(token)
        assert profile is None or profile.status == 404, "a hidden child's profile opens"
    for alias in aliases:
        assert alias not in snapshot.aliases, f"hidden child {alias} is shown"
        assert not re.search(rf"(?<![\w-]){re.escape(alias)}(?![\w-])", text), alias


# Coarser or finer ----------------------------------------------------------------------------

_SUMMARY = re.compile(
    r"^\{alias\} is an? (?P<who>girl|boy|child)(?: aged (?P<age>.+?))?"
    r"(?: (?P<stage>"
    + "|".join(
        re.escape(s)
        for s in sorted({*STAGE_TEXT.values(), *STAGE_WIDE.values()}, key=len, reverse=True)
    )
    + r"))?"
    r" at a safe home in (?P<region>.+)\.$"
)
_ENJOYS = re.compile(r"^Enjoys (?P<list>.+)\.$")
_JOINED = re.compile(r"^\{alias\} (?P<joined>(?:joined .+|\d{4}))\.$")


def _age_interval(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    numbers = [int(n) for n in re.findall(r"\d+", text)]
    if "or under" in text:
        return (0, numbers[0])
    if "under" in text:
        return (0, numbers[0] - 1)
    if "or over" in text:
        return (numbers[0], 200)
    return (numbers[0], numbers[-1])


def facts_of(lines: Iterable[str]) -> dict:
    """The attributes a card or profile states, read back from its sentences."""
    facts: dict = {"interests": frozenset()}
    for line in lines:
        if found := _SUMMARY.match(line):
            facts["gender"] = None if found["who"] == "child" else found["who"]
            facts["age"] = found["age"]
            facts["stage"] = found["stage"]
            facts["region"] = found["region"]
        elif found := _ENJOYS.match(line):
            facts["interests"] = frozenset(re.split(r", | and ", found["list"]))
        elif found := _JOINED.match(line):
            facts["joined"] = found["joined"]
    return facts


def _stage_not_finer(after: str | None, before: str | None) -> bool:
    if after is None or after == before:
        return True
    return any(STAGE_TEXT[code] == before and STAGE_WIDE[code] == after for code in STAGE_TEXT)


def finer_attributes(after_lines: Iterable[str], before_lines: Iterable[str]) -> list[str]:
    """The attributes `after` states more precisely than `before` did (or states at all
    where `before` did not)."""
    a, b = facts_of(after_lines), facts_of(before_lines)
    finer = []
    if a.get("gender") and a.get("gender") != b.get("gender"):
        finer.append("gender")
    age_a, age_b = _age_interval(a.get("age")), _age_interval(b.get("age"))
    if age_a and (age_b is None or not (age_a[0] <= age_b[0] and age_b[1] <= age_a[1])):
        finer.append("age")
    if a.get("region") not in (None, "India", b.get("region")):
        finer.append("region")
    if not _stage_not_finer(a.get("stage"), b.get("stage")):
        finer.append("stage")
    joined_a, joined_b = a.get("joined"), b.get("joined")
    if joined_a and joined_a != joined_b and not (joined_b or "").isdigit():
        finer.append("joined")
    if not a["interests"] <= b["interests"]:
        finer.append("interests")
    return finer


def assert_monotone(before: Snapshot, after: Snapshot) -> None:
    """No card shown in both snapshots says more in `after` than it did in `before`."""
    problems = []
    for card in after.listing:
        old = before.card(card.alias)
        if old is None:
            continue
        old_profile = before.profiles.get(old.token or "")
        new_profile = after.profiles.get(card.token or "")
        before_lines = old.facts + (old_profile.facts if old_profile else ())
        after_lines = card.facts + (new_profile.facts if new_profile else ())
        finer = finer_attributes(after_lines, before_lines)
        if finer:
            problems.append(f"{card.alias}: {', '.join(finer)}")
    assert not problems, "cards became finer: " + "; ".join(problems)


# Single pages ------------------------------------------------------------------------------


def listing_pages(client, url: str = "/sponsor") -> list[tuple[Card, ...]]:
    """The cards of each page of the listing at `url`, following its "next" links."""
    pages: list[tuple[Card, ...]] = []
    seen: set[str] = set()
    next_url: str | None = url
    while next_url is not None:
        assert next_url not in seen, f"the pages of the listing loop back to {next_url}"
        seen.add(next_url)
        response = client.get(next_url)
        assert response.status_code == 200, response.status_code
        page = _parse(response.get_data(as_text=True))
        pages.append(_cards(page))
        next_url = page.next_page
    return pages


def take_snapshot_listing(client) -> tuple[Card, ...]:
    """The unfiltered /sponsor listing only, every page in order."""
    return tuple(card for page in listing_pages(client) for card in page)


def alias_on_profile(client, token: str) -> str | None:
    """The alias a profile page shows (None when it does not open)."""
    response = client.get(f"/sponsor/{token}")
    return _profile(response.status_code, response.get_data(as_text=True), token).alias


def assert_reveals_nothing_new(history: Iterable[Snapshot], latest: Snapshot) -> None:
    """No card of `latest` states an attribute more finely than every earlier card of the
    same child did: a child hidden for a while, or coarsened, never comes back finer than
    she was ever shown."""
    earlier = list(history)
    problems = []
    for card in latest.listing:
        profile = latest.profiles.get(card.token or "")
        after_lines = card.facts + (profile.facts if profile else ())
        news: set[str] | None = None
        for old in earlier:
            shown = old.card(card.alias)
            if shown is None:
                continue
            old_profile = old.profiles.get(shown.token or "")
            before_lines = shown.facts + (old_profile.facts if old_profile else ())
            finer = set(finer_attributes(after_lines, before_lines))
            news = finer if news is None else news & finer
        if news:
            problems.append(f"{card.alias}: {', '.join(sorted(news))}")
    assert not problems, "cards say more than they ever did: " + "; ".join(problems)


def visible_lines(body: str, alias: str | None = None) -> tuple[str, ...]:
    """A page's visible text lines (the alias, if given, as "{alias}")."""
    lines = _parse(body).lines
    return tuple(_replace_alias(line, alias) if alias else line for line in lines)
