"""server.visible.escaped, which list-keys shows a key's name with: what shows nothing is written out,
nothing else changes, and the text written out reads back as the text."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from server.visible import SHOWS_NOTHING, escaped, unseen

#: Names as a person or a mistake writes them: letters of any script, spaces, backslashes, and the
#: characters that show nothing (format, control, the Hangul fillers …).
names = st.text(
    st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from([*sorted(SHOWS_NOTHING), "\u200b", "\ufeff", "\u2066", "\\", " ", "\t"]),
    ),
    max_size=30,
)

_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")


def _read_back(text: str) -> str:
    return _ESCAPE.sub(lambda m: "\\" if m[1] == "\\" else chr(int(m[1][1:], 16)), text)


@given(names)
def test_escaped_shows_every_character_and_reads_back(name: str) -> None:
    shown = escaped(name)
    assert not any(unseen(c) for c in shown)
    if any(unseen(c) for c in name):
        assert _read_back(shown) == name
    else:
        assert shown == name  # a readable name, a typed backslash and all, is shown as it is


def test_escaped_examples() -> None:
    assert escaped("\u3164") == "\\u3164"
    assert escaped("alice\u200b") == "alice\\u200b"
    assert escaped("José desk") == "José desk"
    assert escaped("a\\b\u200b") == "a\\\\b\\u200b"
    assert escaped("x\U000e0100") == "x\\U000e0100"
