"""One-time sign-in links: ``/login?token=<token>`` signs a browser in once, within
:data:`LINK_LIFETIME`, under the key the link was made for (``aquami server sign-in-link``; the demo
prints one).

The link the demo printed before, ``/login?key=<the API key>``, put the key itself in the address
bar and the browser's history: on a shared care-office PC the next person could open it from the
history and sign in under it for as long as the key lived. A token in the history signs in no one
once used or 10 minutes old. Only its SHA-256 is stored (server migration 0069); opening it marks it used in
the UPDATE that checks it is not, so of two browsers opening it together one signs in, the other is
told it was used. The browser is then signed in with a session (``aqs_<secret>`` in the cookie,
:data:`server.auth.SESSION_PREFIX`) standing for the key for a shift: the key itself is not known
to the server, only its hash. The sign-in form signs in with a session too (:func:`session_for_key`):
a cookie holding the key would leak it wherever the cookie went.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

import psycopg

from server.auth import SESSION_LIFETIME, SESSION_PREFIX, Principal, secret_hash
from server.tuple_rows import one_row

#: How long a link signs in: long enough to open it from the terminal or a message, short enough that
#: one found in a history or a chat later signs in no one.
LINK_LIFETIME = timedelta(minutes=10)
#: How long a link is kept after it expired: until then, opened again, it is said to be used or
#: expired rather than unknown; then the next link made or opened deletes it, or the server's hourly
#: purge (server.sign_in_purge), as Open311's claims are deleted after 24 hours (server.open311.repository).
EXPIRED_LINKS_KEPT = timedelta(hours=24)
#: How to get a new link, said on every page refusing one.
NEW_LINK = (
    "Sign in with your API key in the form below, or ask an administrator for a new link "
    "(aquami server sign-in-link --key-id <id>)."
)


class Refusal(Enum):
    """Why a link signs no one in, in words for the page."""

    UNKNOWN = "This sign-in link is not valid: it was never made here, or was deleted a day after it expired."
    USED = "This sign-in link has already been used: a link signs in once."
    EXPIRED = "This sign-in link has expired: a link signs in within 10 minutes of being made."
    REVOKED = "This sign-in link's key has been revoked: it signs no one in."

    def said(self) -> str:
        return f"{self.value} {NEW_LINK}"


@dataclass(frozen=True, slots=True)
class Link:
    """A link's token as made (the only time it is seen) and when it stops signing in."""

    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A link redeemed: its key's principal, and the session for the cookie (``aqs_<secret>``)."""

    principal: Principal
    session: str


def purge(conn: psycopg.Connection) -> None:
    """Delete links expired more than :data:`EXPIRED_LINKS_KEPT` ago, and sessions past their end."""
    conn.execute("DELETE FROM sign_in_links WHERE expires_at < now() - %s", (EXPIRED_LINKS_KEPT,))
    conn.execute("DELETE FROM sign_in_sessions WHERE expires_at < now()")


def make_link(conn: psycopg.Connection, key_id: str) -> Link:
    """A new one-time link's token for the key ``key_id``; LookupError saying so for no such key, or
    a revoked one (its link would sign no one in)."""
    row = one_row(conn, "SELECT revoked_at FROM api_keys WHERE key_id = %s", (key_id,))
    if row is None:
        raise LookupError(f"no API key {key_id!r} (aquami server list-keys lists them)")
    (revoked_at,) = row
    if revoked_at is not None:
        raise LookupError(
            f"the API key {key_id!r} was revoked at {revoked_at:%Y-%m-%dT%H:%M:%SZ}: its link would sign no one in"
        )
    purge(conn)
    token = secrets.token_urlsafe(32)
    made = one_row(
        conn,
        "INSERT INTO sign_in_links (token_hash, key_id, expires_at) VALUES (%s, %s, now() + %s) RETURNING expires_at",
        (secret_hash(token), key_id, LINK_LIFETIME),
    )
    assert made is not None
    return Link(token, made[0])


#: Marks the link used when it is not yet, has not expired and its key is not revoked. Under READ
#: COMMITTED a second UPDATE of the row waits for the first's transaction, then sees ``used_at`` set
#: and updates nothing: one of two concurrent openings wins.
_REDEEM = """
UPDATE sign_in_links l SET used_at = now()
FROM api_keys k
WHERE l.token_hash = %s AND l.used_at IS NULL AND l.expires_at > now()
  AND k.key_id = l.key_id AND k.revoked_at IS NULL
RETURNING k.key_id, k.name, k.roles
"""
_WHY_NOT = """
SELECT l.used_at IS NOT NULL AS used, l.expires_at <= now() AS expired, k.revoked_at IS NOT NULL AS revoked
FROM sign_in_links l JOIN api_keys k ON k.key_id = l.key_id
WHERE l.token_hash = %s
"""


def redeem(conn: psycopg.Connection, token: str) -> SignedIn | Refusal:
    """Sign in with the link's token: its key's principal and a new session, the link marked used in
    the same transaction; or why it signs no one in."""
    if "\x00" in token:  # PostgreSQL text holds none; no token made holds one
        return Refusal.UNKNOWN
    token_hash = secret_hash(token)
    with conn.transaction():
        purge(conn)
        row = one_row(conn, _REDEEM, (token_hash,))
        if row is None:
            return _why_not(conn, token_hash)
        key_id, name, roles = row
        session = _open_session(conn, key_id)
    return SignedIn(Principal(key_id, name, frozenset(roles)), session)


def _open_session(conn: psycopg.Connection, key_id: str) -> str:
    """A new session for the key ``key_id``, for the cookie: ``aqs_<secret>``, only its hash stored."""
    secret = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO sign_in_sessions (secret_hash, key_id, expires_at) VALUES (%s, %s, now() + %s)",
        (secret_hash(secret), key_id, SESSION_LIFETIME),
    )
    return f"{SESSION_PREFIX}{secret}"


def session_for_key(conn: psycopg.Connection, principal: Principal) -> str:
    """A session for a key the sign-in form (or the old ``/login?key=`` link) was given and found
    valid: the cookie holds it, not the key, so the key (valid for months) never sits in a cookie
    store. It ends as a link's does: after :data:`server.auth.SESSION_LIFETIME`, at sign-out, or with
    the key's revocation."""
    with conn.transaction():
        purge(conn)
        return _open_session(conn, principal.key_id)


def _why_not(conn: psycopg.Connection, token_hash: str) -> Refusal:
    row = one_row(conn, _WHY_NOT, (token_hash,))
    if row is None:
        return Refusal.UNKNOWN
    used, expired, revoked = row
    if revoked:
        return Refusal.REVOKED
    return Refusal.USED if used else Refusal.EXPIRED if expired else Refusal.UNKNOWN


def link_key_name(conn: psycopg.Connection, token: str) -> str | Refusal:
    """The name of the key a link signs in under, when it would (to ask "Sign in as <name>?" before
    redeeming it); or why it would not. Reads only: the link stays unused."""
    if "\x00" in token:
        return Refusal.UNKNOWN
    row = one_row(
        conn,
        """
        SELECT k.name FROM sign_in_links l JOIN api_keys k ON k.key_id = l.key_id AND k.revoked_at IS NULL
        WHERE l.token_hash = %s AND l.used_at IS NULL AND l.expires_at > now()
        """,
        (secret_hash(token),),
    )
    if row is None:
        return _why_not(conn, secret_hash(token))
    return str(row[0])


def end_session(conn: psycopg.Connection, session: str) -> None:
    """Sign a session out: its cookie, copied elsewhere before, signs in no more."""
    if session.startswith(SESSION_PREFIX) and "\x00" not in session:
        conn.execute(
            "DELETE FROM sign_in_sessions WHERE secret_hash = %s", (secret_hash(session[len(SESSION_PREFIX) :]),)
        )
