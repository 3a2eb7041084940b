"""A URL's password hidden for a message: MQTT URLs (``aquami.mqtt``) and database URLs alike.

A URL as given is never written out whole: ``redacted`` shows ``scheme://user:***@host`` and
``password=***`` (a PostgreSQL URL's query or key=value settings), and :func:`hide_password` takes
a URL's password out of any text (a library's message that quotes the URL, or part of it).
"""

from __future__ import annotations

import re
from urllib.parse import unquote


def redacted(url: str) -> str:
    """``url`` with its password as ``***``, for a message: ``mqtt://coll:***@host:1883``. Read from
    the text, not a parse, so a URL too broken to parse (no scheme, a ``/``, ``#`` or ``@`` in the
    password) hides it too: everything between the user's ``:`` and the last ``@`` goes; and so does
    every ``password=`` setting's value."""
    url = _PASSWORD_SETTING.sub(r"\1***", url)
    before, at, host = url.rpartition("@")
    scheme, separator, userinfo = before.partition("://")
    if not (separator and _SCHEME.fullmatch(scheme)):
        scheme, separator, userinfo = "", "", before
    user, colon, _ = userinfo.partition(":")
    if not at or not colon:
        return url
    return f"{scheme}{separator}{user}:***@{host}"


def hide_password(text: str, url: str) -> str:
    """``text`` with ``url``'s password as ``***`` wherever it shows: the URL whole, the password
    (as given, and percent-decoded), and a quoted piece of the URL that holds part of it (libpq's
    ``missing "=" after "postgresql//aquami:S3cret" …`` quotes the URL up to a space)."""
    spans = _password_spans(url)
    text = text.replace(url, redacted(url))
    for start, end in spans:
        secret = url[start:end]
        for form in {secret, secret.strip("'"), unquote(secret)}:
            if form and form != "***":
                text = text.replace(form, "***")
    return _QUOTED.sub(lambda quoted: f'"{_masked_piece(quoted.group(1), url, spans)}"', text)


def _masked_piece(piece: str, url: str, spans: list[tuple[int, int]]) -> str:
    """``piece`` with what it holds of a password as ``***``, when it is a part of ``url``."""
    at = url.find(piece) if piece else -1
    while at >= 0:
        end = at + len(piece)
        for start, stop in spans:
            if start < end and at < stop:  # overlaps the password
                return f"{url[at : max(at, start)]}***{url[min(stop, end) : end]}"
        at = url.find(piece, at + 1)
    return piece


def _password_spans(url: str) -> list[tuple[int, int]]:
    """Where ``url``'s passwords are: after the user's ``:`` up to the last ``@``, and each
    ``password=`` setting's value."""
    spans = [match.span(2) for match in _PASSWORD_SETTING.finditer(url)]
    before, at, _ = url.rpartition("@")
    scheme, separator, userinfo = before.partition("://")
    if not (separator and _SCHEME.fullmatch(scheme)):
        userinfo = before
    _, colon, password = userinfo.partition(":")
    if at and colon:
        spans.append((len(before) - len(password), len(before)))
    return [(start, end) for start, end in spans if end > start]


_QUOTED = re.compile(r'"([^"]*)"')
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
#: ``password=…`` in key=value settings (a quoted value may hold spaces) or a URL's query
_PASSWORD_SETTING = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&#]*)", re.IGNORECASE)
