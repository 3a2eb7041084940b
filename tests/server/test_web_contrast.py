"""The pages' text is readable: every colour the stylesheet gives text has a contrast of at least
4.5:1 (WCAG 2.2 AA, 1.4.3, for text under 18 pt) against every background it is shown on. Before,
the muted grey (the labels of an enquiry's and a meter's details, the care desk's filters, every
"reload" line) was 4.28:1 on a card and 4.02:1 on the page, the links' blue 4.22:1 on the page and
a status's 3.89:1 on its pale blue."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import server.web

STYLE = Path(server.web.__file__).with_name("static") / "style.css"
AA_TEXT = 4.5
WHITE = "#ffffff"
#: Text shown on the dark banner, whose rules set no background of their own.
ON_BANNER = {".brand", ".tag", ".who button", "header"}
_RULE = re.compile(r"^([^{]+)\{([^}]*)\}", re.MULTILINE)
_HEX = re.compile(r"#(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{3})\b")


def _rules() -> list[tuple[str, dict[str, str]]]:
    """Each rule's selector and declarations, in the stylesheet's order."""
    found: list[tuple[str, dict[str, str]]] = []
    for selector, body in _RULE.findall(STYLE.read_text()):
        declarations = dict(
            (name.strip(), value.strip())
            for name, _, value in (part.partition(":") for part in body.split(";"))
            if value.strip()
        )
        found.append((selector.strip(), declarations))
    return found


def _variables() -> dict[str, str]:
    root = [declarations for selector, declarations in _rules() if selector == ":root"]
    return root[0]


def _colour(value: str) -> str | None:
    """The hex colour a declaration's value says (through a var()), or None when it says none."""
    variable = re.fullmatch(r"var\((--[a-z-]+)\)", value)
    if variable is not None:
        value = _variables()[variable.group(1)]
    match = _HEX.search(value)
    if match is None:
        return None
    digits = match.group(0)[1:]
    return "#" + (digits if len(digits) == 6 else "".join(d * 2 for d in digits)).lower()


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(one: str, other: str) -> float:
    """WCAG's contrast ratio of two colours, 1 to 21."""
    lighter, darker = sorted((_luminance(one), _luminance(other)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def _backgrounds(selector: str, declarations: dict[str, str]) -> list[str]:
    """What the rule's text is shown on: its own background, else the banner's for the banner's text,
    else the page's and a card's (white)."""
    own = _colour(declarations.get("background", declarations.get("background-color", "")))
    if own is not None:
        return [own]
    variables = _variables()
    if selector in ON_BANNER:
        return [_colour(variables["--ink"]) or ""]
    return [_colour(variables["--bg"]) or "", WHITE]


def _text_colours() -> list[tuple[str, str, str]]:
    """(selector, text colour, background) for every rule that colours text."""
    pairs: list[tuple[str, str, str]] = []
    for selector, declarations in _rules():
        text = _colour(declarations.get("color", ""))
        if text is not None:
            pairs.extend((selector, text, background) for background in _backgrounds(selector, declarations))
    return pairs


def test_the_reading_of_the_stylesheet_finds_the_text_it_colours() -> None:
    pairs = {(selector, background) for selector, _, background in _text_colours()}
    assert (".muted", WHITE) in pairs and ("a", "#f5f8fb") in pairs and (".status", "#e4f0fa") in pairs
    assert (".tag", "#12263a") in pairs
    assert len(pairs) >= 20


@pytest.mark.parametrize(("selector", "text", "background"), _text_colours())
def test_every_text_colour_is_readable_on_its_background(selector: str, text: str, background: str) -> None:
    ratio = contrast(text, background)
    assert ratio >= AA_TEXT, f"{selector}: {text} on {background} is {ratio:.2f}:1, under {AA_TEXT}:1"


def test_the_contrast_ratio_is_wcags() -> None:
    assert contrast("#000000", WHITE) == pytest.approx(21)
    assert contrast(WHITE, WHITE) == pytest.approx(1)
    assert contrast("#777777", WHITE) == pytest.approx(4.48, abs=0.01)  # the well-known just-failing grey


def test_a_link_in_running_text_is_told_from_the_text_by_more_than_its_colour() -> None:
    """WCAG 2.2 1.4.1 (G183): a link among words is underlined, or 3:1 from the text's colour. The
    stylesheet's links were neither (no underline; the blue 3.42:1 from the ink before, 2.62:1 once
    darkened for 1.4.3), so "meter WM-00003" in an enquiry's details read as words to some readers."""
    declarations = dict(_rules())["a"]
    ink = _colour(_variables()["--ink"]) or ""
    link = _colour(declarations["color"]) or ""
    assert "underline" in declarations.get("text-decoration", "") or contrast(link, ink) >= 3
