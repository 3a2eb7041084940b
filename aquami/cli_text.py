"""Text options checked before any work: an id, a name or a word given empty, blank, with a line
break or a NUL in it, or far too long is refused by the option's name (exit 2).

Before, such text went on as it was: ``--account ''`` or ``--gateway ' '`` asked the database for a
row none has, ``--client-id`` of 100 000 characters reached the broker, ``--name 'a<NUL>b'`` was
PostgreSQL's error. None of them can be meant; saying so up front names the option.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import typer

from aquami.contracts.reads import IDENTIFIER_MAX_LENGTH, is_identifier

#: The longest URL an option takes: far beyond a real one, short enough to say in one line.
URL_MAX_LENGTH = 2000
#: The longest free text an option takes (a key's name, a client id): far beyond any real one.
TEXT_MAX_LENGTH = 200

Value = TypeVar("Value", str, list[str], None)


def text_problem(text: str, limit: int = TEXT_MAX_LENGTH) -> str | None:
    """Why ``text`` is no option's text, or None. Said without the text: it may be 100 000 characters."""
    if not text:
        return "is empty"
    if not text.strip():
        return "is blank"
    if "\x00" in text:
        return "contains a NUL character, which the database stores in no text"
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "holds a control character (a line break, a tab or a NUL)"
    if len(text) > limit:
        return f"has {len(text)} characters; at most {limit}"
    return None


def _each(value: str | list[str] | None) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def checked_by(option: str, problem_of: Callable[[str], str | None]) -> Callable[[Value], Value]:
    """An option's callback: each of its values (one, a list's each, None none) refused by the
    option's name with what ``problem_of`` says is wrong with it, if anything."""

    def check(value: Value) -> Value:
        for text in _each(value):
            problem = problem_of(text)
            if problem is not None:
                raise typer.BadParameter(problem, param_hint=option)
        return value

    return check


def checked_text(
    option: str, limit: int = TEXT_MAX_LENGTH, *, empty_ok: bool = False, needs: str | None = None
) -> Callable[[Value], Value]:
    """An option's callback refusing text that is empty (unless ``empty_ok``: a default meaning
    "none"), blank, has a control character or is longer than ``limit``; a list option's each value.
    ``needs`` says, for an empty or blank one, what the option is for (``create-key --name``: "a key
    needs a name saying who or what it is for"), where "is blank" alone would not."""

    def problem_of(text: str) -> str | None:
        problem = None if empty_ok and text == "" else text_problem(text, limit)
        if problem is not None and needs is not None and not text.strip():
            return f"{needs}, not {text!r}"
        return problem

    return checked_by(option, problem_of)


def checked_identifier(option: str) -> Callable[[Value], Value]:
    """An option's callback for a meter's, a bus's or a gateway's id: the readings' schema's
    identifier (a letter or digit, then those and ``._:-``; at most 64 characters)."""

    def problem_of(text: str) -> str | None:
        if len(text) > IDENTIFIER_MAX_LENGTH:  # not said whole: it may be 100 000 characters
            return f"has {len(text)} characters; an identifier has at most {IDENTIFIER_MAX_LENGTH}"
        if not is_identifier(text):
            return f"{text!r} is no identifier (letters, digits and . _ : -, at most 64)"
        return None

    return checked_by(option, problem_of)


def checked_http_url(option: str) -> Callable[[Value], Value]:
    """An option's callback for an ``http://`` or ``https://`` URL with a host and, if given, a port
    from 1 to 65535: before, ``not a url`` was urllib's "unknown url type" and port 99999 a refused
    connection, each said only after the command had started."""

    def problem_of(value: str) -> str | None:
        problem = text_problem(value, URL_MAX_LENGTH)
        if problem is not None:
            return problem
        try:
            parts = urlsplit(value)  # ValueError: a bracket not closed, http://[::1
            port = parts.port
        except ValueError:
            parts, port = urlsplit(""), -1
        if port == -1 and value.count("[") != value.count("]"):
            return f"{value!r} is no URL: a [ not closed"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return f"{value!r} is no http:// URL with a host, e.g. http://127.0.0.1:8470"
        if port == -1 or port == 0:
            return f"{value!r}: the port must be a number from 1 to 65535"
        return None

    return checked_by(option, problem_of)


def checked_host(option: str) -> Callable[[Value], Value]:
    """An option's callback for an address to listen on: one this machine can resolve (an IP
    address, ``localhost``, a name). Before, ``256.1.1.1`` or an empty host was found out only by
    the bind, after the command had started its other parts (the demo its database and broker).
    A name the resolver could not answer for just now (``EAI_AGAIN``: no network yet at boot) is
    let through: refused, it was a usage error (exit 2), which a service unit does not start again
    (aquami.exit_codes), and a server named by its host would have stayed down after a boot."""

    def problem_of(value: str) -> str | None:
        problem = text_problem(value, 253)  # the longest DNS name
        if problem is not None:
            return problem
        try:
            socket.getaddrinfo(value, None, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            if error.errno == socket.EAI_AGAIN:  # the resolver did not answer (at boot, say): no fault of
                return None  # the name's; the bind says so and exits 1, which a service unit starts again
            return f"{value!r} is no address this machine can listen on (an IP address or a name)"
        except (OSError, UnicodeError):  # a label over 63 characters is a UnicodeError
            return f"{value!r} is no address this machine can listen on (an IP address or a name)"
        return None

    return checked_by(option, problem_of)


def checked_mqtt_url(option: str) -> Callable[[Value], Value]:
    """An option's callback for a broker's ``mqtt://`` or ``mqtts://`` URL (None stays None). Before,
    the demo took an empty one for "the embedded broker" and read any other only once its database
    was up; 100 000 characters were echoed whole."""

    def problem_of(text: str) -> str | None:
        from aquami.mqtt import MqttEndpoint  # here: paho is imported only by commands that use it

        problem = text_problem(text, URL_MAX_LENGTH)
        if problem is not None:
            return problem
        try:
            MqttEndpoint.parse(text)
        except ValueError as error:
            return str(error)
        return None

    return checked_by(option, problem_of)
