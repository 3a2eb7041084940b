"""What a request's ``Accept`` header prefers (RFC 9110 §12.5.1), for the choices the server makes on
it: an address no route matches is answered an HTML page for a browser, problem+json otherwise; and
billing's reads and determinants are answered CSV where ``text/csv`` is preferred to JSON
(:func:`preferred`).

A media type's quality is that of the most specific range matching it (``text/html`` over ``text/*``
over ``*/*``; among equally specific ones, the highest, so the ranges' order never matters); a type
no range matches has quality 0. A range with parameters besides ``q`` (``text/html;level=1``) names a
narrower type than a bare one and is not taken for it. A malformed range or ``q`` is left out, and no
``Accept`` at all (or one left with no range) accepts everything alike (``*/*``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

#: RFC 9110 §5.6.2's token: a type, a subtype, a parameter's name.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: RFC 9110 §12.4.2's qvalue: 0 to 1, at most three decimals.
_QVALUE = re.compile(r"^(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)$")

HTML = "text/html"
#: What the API answers: a client asking for these (or for anything alike, ``*/*``) gets them.
JSON_TYPES = ("application/json", "application/problem+json")


@dataclass(frozen=True, slots=True)
class MediaRange:
    """One range of an ``Accept``: ``type/subtype`` in lower case (either may be ``*``), its ``q``
    in thousandths (0 to 1000: exact, where a float's comparison of 0.9 and 0.900 might not be), and
    whether it had parameters besides ``q``."""

    type: str
    subtype: str
    q: int = 1000
    parameters: bool = False

    def specificity(self, media_type: str) -> int | None:
        """How specifically this range names ``media_type`` (a bare ``type/subtype``): 2 exactly, 1 by
        its type (``text/*``), 0 as ``*/*``; None when it does not match it."""
        kind, _, sub = media_type.lower().partition("/")
        if self.parameters:
            return None
        if self.type == "*":
            return 0 if self.subtype == "*" else None
        if self.type != kind:
            return None
        if self.subtype == "*":
            return 1
        return 2 if self.subtype == sub else None


def parse_accept(header: str | None) -> list[MediaRange]:
    """The ranges of an ``Accept`` value, in order; a malformed one (no ``/``, a bad token or ``q``,
    ``*/html``) left out; ``*/*`` alone for no header, or a header with no valid range."""
    ranges = [parsed for part in (header or "").split(",") if (parsed := _parse_range(part)) is not None]
    return ranges or [MediaRange("*", "*")]


def _parse_range(text: str) -> MediaRange | None:
    name, *parameters = text.split(";")
    kind, slash, sub = name.strip().lower().partition("/")
    if not slash or not _TOKEN.match(kind) or not _TOKEN.match(sub) or (kind == "*" and sub != "*"):
        return None
    q, others = 1000, False
    for parameter in parameters:
        key, equals, value = parameter.strip().partition("=")
        key = key.strip().lower()
        if not equals or not _TOKEN.match(key):
            return None
        if key == "q":
            value = value.strip()
            if not _QVALUE.match(value):
                return None
            whole, _, decimals = value.partition(".")
            q = int(whole) * 1000 + int(decimals.ljust(3, "0"))
            break  # what follows q is the range's accept-ext, not its parameters (RFC 9110 §12.5.1)
        others = True
    return MediaRange(kind, sub, q, others)


def _match(ranges: list[MediaRange], media_type: str) -> tuple[int, int] | None:
    """(specificity, q) of the range deciding ``media_type``'s quality: the most specific matching
    one (the highest q of those equally specific); None when no range matches it."""
    best: tuple[int, int] | None = None
    for media_range in ranges:
        specificity = media_range.specificity(media_type)
        if specificity is not None and (best is None or (specificity, media_range.q) > best):
            best = (specificity, media_range.q)
    return best


def quality(ranges: list[MediaRange], media_type: str) -> int:
    """``media_type``'s quality under ``ranges``, in thousandths: the most specific matching range's
    (the highest of those equally specific), 0 when none matches."""
    match = _match(ranges, media_type)
    return 0 if match is None else match[1]


def preferred(header: str | None, offered: Sequence[str]) -> str | None:
    """Which of ``offered`` (the server's default first) ``Accept`` prefers: the highest quality; at
    equal quality, the one a more specific range names (``text/csv`` named over ``application/json``
    reached by ``*/*``), then the one offered first. The ranges' order in the header never decides (it
    does not decide a quality either). None when every one has quality 0: ``q=0`` is "not acceptable".
    """
    ranges = parse_accept(header)
    best: str | None = None
    best_rank = (0, -1)  # (q, specificity): a type of q 0 is never chosen
    for media_type in offered:
        match = _match(ranges, media_type)
        if match is None:
            continue
        specificity, q = match
        if q > 0 and (q, specificity) > best_rank:
            best, best_rank = media_type, (q, specificity)
    return best


def prefers_html(header: str | None) -> bool:
    """Whether ``Accept`` ranks ``text/html`` above every type the API answers, as a browser's does
    (``text/html,…,*/*;q=0.8``); an API client's (``application/json``), curl's (``*/*``) and none
    at all do not."""
    ranges = parse_accept(header)
    return quality(ranges, HTML) > max(quality(ranges, media_type) for media_type in JSON_TYPES)
