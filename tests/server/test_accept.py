"""The ``Accept`` parser (server.accept) the unrouted 404 chooses its answer by: HTML to a browser,
problem+json to everyone else. Properties over generated headers, and the headers clients send."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from server.accept import HTML, JSON_TYPES, MediaRange, parse_accept, preferred, prefers_html, quality

TYPES = ["text/html", "application/json", "application/problem+json", "application/xml", "image/webp"]
WILDCARDS = ["*/*", "text/*", "application/*", "image/*"]
#: Parts that are no media range: each is left out, whatever is around it.
MALFORMED = [
    "",
    " ",
    "text",
    "/html",
    "*/html",
    "text/",
    "te xt/html",
    "text/html;q=2",
    "text/html;q=0.1234",
    "text/html;q=",
    "text/html;q=-1",
    "text/html;=1",
    "q=0.5",
    "text/html;q=abc",
    "text/html;q=1.001",
]

#: (type/subtype, q in thousandths), rendered with any of q's spellings.
ranges = st.lists(st.tuples(st.sampled_from(TYPES + WILDCARDS), st.integers(0, 1000)), max_size=8)
spaces = st.sampled_from(["", " ", "  ", "\t"])


def _q(thousandths: int, spelling: int) -> str:
    """One of the spellings of a qvalue: ``0.5``, ``0.50``, ``0.500``; ``1``, ``1.0``; ``0``."""
    if thousandths == 1000:
        return ["1", "1.0", "1.000"][spelling % 3]
    text = f"0.{thousandths:03d}"
    return text.rstrip("0").rstrip(".") if spelling % 3 == 0 else text


@st.composite
def headers(draw: st.DrawFn, chosen: list[tuple[str, int]] | None = None) -> str:
    parts = []
    for media_type, q in draw(ranges) if chosen is None else chosen:
        around, after = draw(spaces), draw(spaces)
        shown = media_type.upper() if draw(st.booleans()) else media_type
        if q == 1000 and draw(st.booleans()):
            parts.append(f"{around}{shown}{after}")
        else:
            parts.append(
                f"{around}{shown}{after};{draw(spaces)}{draw(st.sampled_from('qQ'))}={_q(q, draw(st.integers()))}"
            )
    return ",".join(parts)


@given(st.text())
def test_any_text_parses_to_ranges_of_q_0_to_1_and_never_raises(header: str) -> None:
    parsed = parse_accept(header)
    assert parsed and all(0 <= r.q <= 1000 for r in parsed)
    assert isinstance(prefers_html(header), bool)


@given(st.data(), ranges)
def test_a_header_s_ranges_are_read_back_whatever_its_spacing_case_and_q_spelling(
    data: st.DataObject, chosen: list[tuple[str, int]]
) -> None:
    header = data.draw(headers(chosen))
    expected = [MediaRange(t.partition("/")[0], t.partition("/")[2], q) for t, q in chosen] or [MediaRange("*", "*")]
    assert parse_accept(header) == expected


@given(st.data(), ranges, st.permutations(range(8)))
def test_a_type_s_quality_does_not_depend_on_the_ranges_order(
    data: st.DataObject, chosen: list[tuple[str, int]], order: list[int]
) -> None:
    shuffled = [chosen[i] for i in order if i < len(chosen)]
    one, other = parse_accept(data.draw(headers(chosen))), parse_accept(data.draw(headers(shuffled)))
    for media_type in (HTML, *JSON_TYPES):
        assert quality(one, media_type) == quality(other, media_type)


@given(st.data(), ranges, st.lists(st.sampled_from(MALFORMED), min_size=1, max_size=4), st.integers(0, 8))
def test_malformed_parts_are_left_out_and_change_nothing(
    data: st.DataObject, chosen: list[tuple[str, int]], malformed: list[str], at: int
) -> None:
    header = data.draw(headers(chosen))
    parts = header.split(",") if header else []
    spoiled = ",".join([*parts[:at], *malformed, *parts[at:]])
    assert parse_accept(spoiled) == parse_accept(header)
    assert prefers_html(spoiled) == prefers_html(header)


@given(st.data(), ranges)
def test_the_most_specific_range_decides_a_type_s_quality(data: st.DataObject, chosen: list[tuple[str, int]]) -> None:
    """``text/html;q=0`` refuses HTML under any ``*/*``; ``text/*`` decides where no ``text/html`` is."""
    parsed = parse_accept(data.draw(headers(chosen)))
    exact = [q for t, q in chosen if t == HTML]
    by_type = [q for t, q in chosen if t == "text/*"]
    anything = [q for t, q in chosen if t == "*/*"]
    assert quality(parsed, HTML) == max(exact or by_type or anything or ([1000] if not chosen else [0]))


@given(st.data(), ranges)
def test_a_type_s_quality_is_werkzeug_s(data: st.DataObject, chosen: list[tuple[str, int]]) -> None:
    """Against a second reading: Werkzeug's (installed with schemathesis, a test dependency only, so
    the server does not use it), which ranks a type's ranges by specificity, then q, as RFC 9110 does."""
    header = data.draw(headers(chosen))
    theirs = parse_accept_header(header, MIMEAccept) if chosen else MIMEAccept([("*/*", 1)])
    parsed = parse_accept(header)
    for media_type in (HTML, *JSON_TYPES, "image/webp", "text/css"):
        assert quality(parsed, media_type) / 1000 == theirs.quality(media_type), media_type


@given(st.data(), ranges)
def test_an_api_client_naming_json_at_q_1_never_gets_html(data: st.DataObject, chosen: list[tuple[str, int]]) -> None:
    header = data.draw(headers(chosen))
    assert not prefers_html(f"{header},application/json,application/problem+json")


@given(st.integers(0, 1000), st.integers(0, 1000))
def test_a_browser_s_header_prefers_html_when_html_ranks_above_the_rest(html: int, rest: int) -> None:
    header = f"text/html;q={_q(html, 1)},application/xhtml+xml,*/*;q={_q(rest, 1)}"
    assert prefers_html(header) == (html > rest)


@pytest.mark.parametrize(
    ("header", "html"),
    [
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),  # Firefox
        (
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,"
            "application/signed-exchange;v=b3;q=0.7",
            True,
        ),  # Chrome
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),  # Safari
        ("text/html;level=1", False),  # a narrower type than text/html: not taken for it
        ("*/*", False),  # curl, httpx, requests
        (None, False),  # urllib, a bare socket
        ("", False),
        ("application/json", False),
        ("application/problem+json, application/json;q=0.9", False),
        ("application/json;q=0.5, text/html", True),
        ("text/*, application/json;q=0.9", True),
        ("text/css,*/*;q=0.1", False),  # a stylesheet's request
        ("image/avif,image/webp,*/*;q=0.8", False),  # an image's
        ("text/html;q=0, */*", False),
    ],
)
def test_the_headers_clients_send(header: str | None, html: bool) -> None:
    assert prefers_html(header) is html


#: What billing answers its reads and determinants in, the default first (server.billing.router).
OFFERED = ("application/json", "text/csv")
CSV_RANGES = st.lists(
    st.tuples(st.sampled_from(["text/csv", "application/json", "*/*", "text/*", "application/*", "text/html"]),
              st.integers(0, 1000)),
    max_size=6,
)  # fmt: skip


@given(st.data(), CSV_RANGES)
def test_the_preferred_type_is_werkzeug_s_best_match(data: st.DataObject, chosen: list[tuple[str, int]]) -> None:
    """The highest q wins, q 0 is never chosen, an equal q goes to the type named more specifically,
    then to the default (JSON): as Werkzeug's best_match, a second reading."""
    header = data.draw(headers(chosen))
    theirs = parse_accept_header(header, MIMEAccept) if chosen else MIMEAccept([("*/*", 1)])
    assert preferred(header, OFFERED) == theirs.best_match(OFFERED)


@given(st.data(), st.integers(0, 1000), st.integers(0, 1000), st.booleans())
def test_csv_is_preferred_exactly_when_its_q_is_above_json_s_whatever_their_order(
    data: st.DataObject, csv_q: int, json_q: int, csv_first: bool
) -> None:
    chosen = [("text/csv", csv_q), ("application/json", json_q)]
    header = data.draw(headers(chosen if csv_first else chosen[::-1]))
    assert (preferred(header, OFFERED) == "text/csv") is (csv_q > json_q)


@pytest.mark.parametrize(
    ("header", "answer"),
    [
        ("text/csv;q=0.1, application/json", "application/json"),  # was CSV: the header named text/csv
        ("text/csv", "text/csv"),
        ("text/csv, */*;q=0.5", "text/csv"),
        ("text/csv, */*", "text/csv"),  # equal q: the type named exactly
        ("text/csv, application/json", "application/json"),  # either alike: the default
        ("application/json;q=0.5, text/csv", "text/csv"),
        ("text/csv;q=0, */*", "application/json"),  # q=0: not acceptable
        ("text/*, application/json;q=0.9", "text/csv"),
        ("text/csv;q=0, application/json;q=0", None),
        ("*/*", "application/json"),
        (None, "application/json"),
        ("text/html", None),
    ],
)
def test_what_billing_clients_send(header: str | None, answer: str | None) -> None:
    assert preferred(header, OFFERED) == answer
