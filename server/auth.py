"""API keys carrying roles: ``Authorization: Bearer aqk_<id>.<secret>`` (or ``X-API-Key``).

Only the SHA-256 of the secret is stored. A missing or unknown key is 401; a valid key without a
role the endpoint accepts is 403. ``admin`` is accepted everywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from fastapi import Depends, Request

from server.db import get_connection
from server.origins import from_another_site
from server.problems import Problem
from server.tuple_rows import all_rows, one_row
from server.visible import invisible, named, nothing_shown, unseen

#: ``customer_app``: an app customers use (a civic Open311 client), which may only raise enquiries and
#: follow those it raised.
ROLES = (
    "admin",
    "reader",
    "meterization",
    "billing",
    "customer_care",
    "cashier",
    "credit_control",
    "customer_app",
)
#: The names the system writes as who did something (an alert's ``dismissed_by``, an enquiry
#: update's ``by``, a reading's ``quality_by``/``superseded_by``): detection's folds and notes, the
#: enquiry notes meterization's records trigger, ingest, and VEE (``vee``, ``vee:<method>``). A
#: person's key must not be named like one: its actions would read as the system's, and migration
#: 0039 takes a dismissal by ``detection`` for a fold and closes the alert's enquiry as a duplicate.
SYSTEM_NAMES = frozenset({"detection", "meterization", "ingest", "vee"})
KEY_PREFIX = "aqk_"
SESSION_COOKIE = "aquami_key"
#: What a sign-in (the form, a one-time link: server.sign_in_links) puts in the cookie: ``aqs_<secret>``,
#: a session standing for its key, never the key itself: a cookie goes where a browser profile is
#: copied or a cookie store is read, and a key lives for months. Taken from the cookie only: an API
#: client presenting one is told it needs a key (:data:`SESSION_NOT_A_KEY`).
SESSION_PREFIX = "aqs_"
#: The 401's words for a session presented as ``Authorization: Bearer`` or ``X-API-Key``.
SESSION_NOT_A_KEY = (
    "a sign-in session is for the web page (its cookie), not an API client: an API client needs an "
    "API key (aqk_…, aquami server create-key)"
)
#: How long a browser stays signed in: a shift. Without ``Max-Age`` the cookie lasted until the browser
#: closed, which a care-desk PC left on never does, and for ever where the browser restores its last
#: session. 12 hours covers a day shift or a night shift whole, so no one is signed out mid-call, and a
#: PC left signed in overnight is not the next morning. The session ends then (the browser drops the
#: cookie, the server refuses it past ``expires_at``), at sign-out, or with its key's revocation; the
#: key itself stays valid until revoked (``aquami server revoke-key``), as it does for the API.
SESSION_LIFETIME = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    name: str
    roles: frozenset[str]


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_hash(secret: str) -> str:
    """What is stored of a secret (a key's, a sign-in link's token, a session's): its SHA-256 in hex.
    The secrets are 256-bit random, so a fast hash is enough (migration 0001)."""
    return _hash(secret)


def check_key_roles(roles: list[str]) -> None:
    """ValueError unless ``roles`` are some of :data:`ROLES` (checked before connecting, by the command)."""
    unknown = sorted(set(roles) - set(ROLES))
    if unknown or not roles:
        raise ValueError(f"roles must be among {', '.join(ROLES)}; got {roles}")


def check_key_name(name: str) -> None:
    """ValueError unless ``name`` says who or what a new key is for, and is no name the system uses."""
    # the name is who edits, dismisses and pays: it must say someone. A name of invisible characters
    # alone (U+200B, a Hangul filler) passed ``strip()`` and wrote changes by no one a person can read.
    if nothing_shown(name) is not None or "\x00" in name:
        raise ValueError(f"a key needs a name saying who or what it is for, not {name!r}{_unseen(name)}")
    if _is_system_name(name):
        raise ValueError(
            f"a key cannot be named {name!r}: {', '.join(sorted(SYSTEM_NAMES))} (and vee:…) are the names the "
            "system records its own actions under; name the key after the person or service using it"
        )


def create_api_key(conn: psycopg.Connection, name: str, roles: list[str]) -> str:
    """Store a new key and return it; this is the only time the full key is ever seen."""
    check_key_roles(roles)
    check_key_name(name)
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO api_keys (key_id, secret_hash, name, roles) VALUES (%s, %s, %s, %s)",
        (key_id, _hash(secret), name, sorted(set(roles))),
    )
    return f"{KEY_PREFIX}{key_id}.{secret}"


#: What an administrator does about a key whose name misleads: there is no renaming a key (its name is
#: recorded beside every change it made), so a new key is made for its user, and it is revoked.
_REPLACE_IT = "give whoever uses it a key with a readable name (create-key), then revoke this one (revoke-key)"


def key_name_problem(name: str) -> str | None:
    """What is wrong with an existing key's name, in words for ``list-keys``; None for a name that
    reads as it is. A key named before :func:`check_key_name` refused such names keeps its name: it
    shows nothing (its changes are written by no one a person can read), it reads as a system name,
    or it holds characters that show nothing (``alice\u200b`` reads as ``alice``, another key's
    name perhaps)."""
    if nothing_shown(name) is not None:
        return f"this name shows nothing: its changes read as made by no one; {_REPLACE_IT}"
    if _is_system_name(name):
        return f"this name reads as one the system records its own actions under; {_REPLACE_IT}"
    hidden = next((c for c in name if unseen(c)), None)
    if hidden is not None:
        shown = "".join(c for c in name if not unseen(c))
        return f"this name holds {named(hidden)}, which shows nothing: it reads as {shown!r}; {_REPLACE_IT}"
    return None


def _unseen(name: str) -> str:
    """What a refused name holds that cannot be seen in its quoted form, named (``: U+3164 HANGUL
    FILLER``), or nothing."""
    unseen = next((c for c in name if invisible(c) and not c.isspace() and repr(c)[1:-1] == c), None)
    return f" ({named(unseen)} shows nothing)" if unseen is not None else ""


def _is_system_name(name: str) -> bool:
    """Whether ``name`` reads as one of :data:`SYSTEM_NAMES`, whatever its case or surrounding
    spaces or invisible characters (a person reading "Detection" on a note would take it for the system
    as well, and "\u200bdetection" reads as "detection")."""
    folded = "".join(c for c in name if not invisible(c)).casefold()
    return folded in SYSTEM_NAMES or folded.startswith("vee:")


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key as listed: never its secret, nor the secret's hash."""

    key_id: str
    name: str
    roles: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None


def list_api_keys(conn: psycopg.Connection) -> list[KeyRecord]:
    """Every key, revoked ones too, oldest first."""
    rows = all_rows(
        conn, "SELECT key_id, name, roles, created_at, revoked_at FROM api_keys ORDER BY created_at, key_id"
    )
    return [
        KeyRecord(key_id, name, tuple(roles), created_at, revoked_at)
        for key_id, name, roles, created_at, revoked_at in rows
    ]


def key_id_of(text: str) -> str:
    """The id in ``aqk_<id>.<secret>`` or ``aqk_<id>``; the text as given otherwise (an id)."""
    if text.startswith(KEY_PREFIX):
        return text[len(KEY_PREFIX) :].partition(".")[0]
    return text


def revoke_api_key(conn: psycopg.Connection, key_id: str) -> tuple[datetime, bool]:
    """Revoke a key from now on: when it was revoked, and whether by this call (False: it was
    already, and stays revoked since then). LookupError for no such key."""
    row = one_row(
        conn,
        "UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL RETURNING revoked_at",
        (key_id,),
    )
    if row is not None:
        return row[0], True
    row = one_row(conn, "SELECT revoked_at FROM api_keys WHERE key_id = %s", (key_id,))
    if row is None:
        raise LookupError(f"no API key {key_id!r} (aquami server list-keys lists them)")
    return row[0], False


#: One row whether the key id is known (and not revoked) or not: nulls for one that is not.
_KEY_ROW = """
SELECT k.secret_hash, k.name, k.roles
FROM (VALUES (1)) AS asked
LEFT JOIN api_keys k ON k.key_id = %s AND k.revoked_at IS NULL
"""
#: What the secret of a key not known is compared with (no secret hashes to it).
_NO_HASH = "-" * 64


def verify_api_key(conn: psycopg.Connection, key: str) -> Principal | None:
    """The key's principal; None for a key not known, whatever is wrong with it (its id unknown or
    revoked, its secret not the id's), said alike by every caller ("That key is not valid."). A key
    of the right shape costs the same either way, one row from the database, its secret hashed and
    compared, so the time a refusal takes does not say whether its id exists: before, an unknown
    id was answered without a row and without hashing, 28 µs against 31-32 µs for a known id with a
    wrong secret (benchmarks/bench_key_check.py). A sign-in session (``aqs_…``) is no key: None
    (:func:`verify_session` takes it, from the web page's cookie only)."""
    if not key.startswith(KEY_PREFIX) or "." not in key or "\x00" in key:  # PostgreSQL text holds no NUL
        return None
    key_id, _, secret = key[len(KEY_PREFIX) :].partition(".")
    row = one_row(conn, _KEY_ROW, (key_id,))
    assert row is not None  # the LEFT JOIN's one row
    stored_hash, name, roles = row
    matches = hmac.compare_digest(stored_hash or _NO_HASH, _hash(secret))
    if stored_hash is None or not matches:
        return None
    return Principal(key_id, name, frozenset(roles))


#: The key a live session stands for, when the key is not revoked.
_SESSION_ROW = """
SELECT k.key_id, k.name, k.roles
FROM sign_in_sessions s JOIN api_keys k ON k.key_id = s.key_id AND k.revoked_at IS NULL
WHERE s.secret_hash = %s AND s.expires_at > now()
"""


def verify_session(conn: psycopg.Connection, session: str) -> Principal | None:
    """The principal of the key a sign-in session (``aqs_<secret>``) stands for; None for one not a
    session, not known, ended, expired, or whose key was revoked since. Looked up by the hash of its
    256-bit random secret, so how long the look-up takes says nothing of a secret one could guess."""
    if not session.startswith(SESSION_PREFIX) or "\x00" in session:
        return None
    row = one_row(conn, _SESSION_ROW, (_hash(session[len(SESSION_PREFIX) :]),))
    if row is None:
        return None
    key_id, name, roles = row
    return Principal(key_id, name, frozenset(roles))


def record_changes_under(conn: psycopg.Connection, principal: Principal) -> None:
    """Name the key for the rest of the caller's transaction: what a trigger writes under its name (an
    alert's dismissal closing its enquiry) takes its id too (server migration 0047), as two keys may
    carry one name (a rotated key keeps its person's name)."""
    conn.execute(
        "SELECT set_config('aquami.change_key_id', %s, true), set_config('aquami.change_key_name', %s, true)",
        (principal.key_id, principal.name),
    )


def header_key(request: Request) -> str | None:
    """The key in the API's headers: ``Authorization: Bearer <key>``, else ``X-API-Key``; None for
    neither (a blank bearer is a key, and not a valid one)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return request.headers.get("x-api-key") or None


@dataclass(frozen=True, slots=True)
class Presented:
    """What a request signs in with, and where it came from: the API's headers (a key only) or the
    web page's cookie (a session; or a key, put there by a sign-in before sessions)."""

    value: str
    from_cookie: bool


def presented_key(request: Request) -> Presented | None:
    """The key in the API's headers, else the web page's cookie; None for neither."""
    key = header_key(request)
    if key is not None:
        return Presented(key, from_cookie=False)
    cookie = request.cookies.get(SESSION_COOKIE)
    return Presented(cookie, from_cookie=True) if cookie else None


def is_session_as_key(presented: Presented) -> bool:
    """A sign-in session given where a key goes (a header, an Open311 body): refused, saying
    :data:`SESSION_NOT_A_KEY`."""
    return not presented.from_cookie and presented.value.startswith(SESSION_PREFIX)


def verify_presented(conn: psycopg.Connection, presented: Presented) -> Principal | None:
    """The principal of what the request signs in with: from the cookie, a session (or a key a sign-in
    put there before sessions, kept working until the cookie expires or signs out); from a header, a
    key only (a session there is None: :func:`is_session_as_key` says why)."""
    if presented.from_cookie and presented.value.startswith(SESSION_PREFIX):
        return verify_session(conn, presented.value)
    return verify_api_key(conn, presented.value)


#: Methods that only read: a link or an image on another site may send them with the cookie, to no effect.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _signed_by_cookie_from_another_site(request: Request, presented: Presented) -> bool:
    """A write signed in only by the web page's cookie, started by another site. The cookie is
    SameSite=Strict, and the API takes JSON bodies only, which a cross-site form cannot send: two
    defences that hold today. This one holds without them (a browser that sends the cookie, a
    route that takes a form): the same check the page's own sign-in has (server.origins)."""
    if request.method in _SAFE_METHODS or not presented.from_cookie:
        return False  # a key in a header came with the request itself: no browser adds it cross-site
    return from_another_site(request)


def may(principal: Principal, *allowed: str) -> bool:
    """Whether the key has one of ``allowed``, or ``admin``: the rule of :func:`require_role`, for a
    web page that shows a key what it may do (and answers what it may not on the page itself)."""
    return bool(principal.roles & (frozenset(allowed) | {"admin"}))


def refusal(principal: Principal, allowed: Iterable[str], what: str) -> str:
    """Why the key may not ``what``, for a web page to say: "this key (billing) may not see
    enquiries: that needs one of admin, customer_care, meterization, reader" (``allowed`` and admin)."""
    held, needed = ", ".join(sorted(principal.roles)), ", ".join(sorted({*allowed, "admin"}))
    return f"this key ({held}) may not {what}: that needs one of {needed}"


def authorize(
    conn: psycopg.Connection,
    key: str | Presented | None,
    *allowed: str,
    hint: str = "Authorization: Bearer <key>",
) -> Principal:
    """The key's principal when it has one of ``allowed`` (or ``admin``): 401 without a valid key
    (saying where one goes: ``hint``; a sign-in session given as a key, saying it is for the web
    page), 403 without such a role. A ``str`` is a key given with the request (a header, a body)."""
    presented = Presented(key, from_cookie=False) if isinstance(key, str) else key
    if presented is not None and is_session_as_key(presented):
        raise _unauthorized(f"{SESSION_NOT_A_KEY} ({hint})")
    principal = verify_presented(conn, presented) if presented is not None and presented.value else None
    if principal is None:
        raise _unauthorized(f"a valid API key is required ({hint})")
    if not may(principal, *allowed):
        raise Problem(
            403,
            f"this key's roles ({', '.join(sorted(principal.roles))}) may not do this; "
            f"needs one of {', '.join(sorted({*allowed, 'admin'}))}",
        )
    return principal


def _unauthorized(detail: str) -> Problem:
    problem = Problem(401, detail)
    problem.headers = {"WWW-Authenticate": "Bearer"}
    return problem


@dataclass(frozen=True, slots=True)
class RoleRequired:
    """A dependency admitting keys with one of ``allowed`` (or ``admin``): 401, 403. A class, not a
    closure, so the OpenAPI document can find it among a route's dependencies and declare those two
    answers, with the roles (server.problem_docs)."""

    allowed: tuple[str, ...]

    def __call__(self, request: Request, conn: psycopg.Connection = Depends(get_connection)) -> Principal:
        key = presented_key(request)
        if key is not None and _signed_by_cookie_from_another_site(request, key):
            raise Problem(403, "a change signed in by the web page's cookie must come from the web page")
        return authorize(conn, key, *self.allowed)


def require_role(*allowed: str) -> RoleRequired:
    """A dependency admitting keys with one of ``allowed`` (or ``admin``)."""
    return RoleRequired(allowed)
