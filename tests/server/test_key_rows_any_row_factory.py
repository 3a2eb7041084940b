"""server.auth and server.sign_in_links take whatever connection their caller has: the server's pool
makes dict rows, the commands and tests psycopg's tuples. They read each row both ways before; their
queries now run on a tuple cursor of their own (server.tuple_rows), so they answer alike on a
connection of any row factory, one that makes named tuples or single values too."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.rows import RowFactory, dict_row, namedtuple_row, scalar_row, tuple_row

from server.auth import (
    KeyRecord,
    Principal,
    create_api_key,
    key_id_of,
    list_api_keys,
    revoke_api_key,
    verify_api_key,
    verify_session,
)
from server.sign_in_links import Refusal, SignedIn, end_session, link_key_name, make_link, redeem, session_for_key

FACTORIES: dict[str, RowFactory[Any]] = {
    "tuple_row": tuple_row,
    "dict_row": dict_row,
    "namedtuple_row": namedtuple_row,
    "scalar_row": scalar_row,
}


@pytest.mark.parametrize("factory", FACTORIES.values(), ids=FACTORIES.keys())
def test_keys_links_and_sessions_answer_alike_whatever_the_connection_s_rows(
    migrated_database_url: str, factory: RowFactory[Any]
) -> None:
    with psycopg.connect(migrated_database_url, autocommit=True, row_factory=factory) as conn:
        key = create_api_key(conn, "care desk", ["customer_care", "reader"])
        key_id = key_id_of(key)
        principal = Principal(key_id, "care desk", frozenset({"customer_care", "reader"}))
        assert verify_api_key(conn, key) == principal
        assert verify_api_key(conn, key + "x") is None
        (listed,) = list_api_keys(conn)
        assert isinstance(listed, KeyRecord)
        assert (listed.key_id, listed.name, listed.roles, listed.revoked_at) == (
            key_id,
            "care desk",
            ("customer_care", "reader"),
            None,
        )

        link = make_link(conn, key_id)
        assert link.expires_at.tzinfo is not None
        assert link_key_name(conn, link.token) == "care desk"
        signed_in = redeem(conn, link.token)
        assert isinstance(signed_in, SignedIn) and signed_in.principal == principal
        assert verify_session(conn, signed_in.session) == principal
        assert redeem(conn, link.token) is Refusal.USED
        assert link_key_name(conn, link.token) is Refusal.USED
        assert redeem(conn, "never made") is Refusal.UNKNOWN

        form_session = session_for_key(conn, principal)
        assert verify_session(conn, form_session) == principal
        end_session(conn, form_session)
        assert verify_session(conn, form_session) is None

        unused = make_link(conn, key_id)
        revoked_at, now = revoke_api_key(conn, key_id)
        assert now and revoked_at.tzinfo is not None
        assert revoke_api_key(conn, key_id) == (revoked_at, False)
        assert redeem(conn, unused.token) is Refusal.REVOKED
        assert verify_session(conn, signed_in.session) is None
        with pytest.raises(LookupError, match="was revoked at"):
            make_link(conn, key_id)
        with pytest.raises(LookupError, match="no API key 'nosuchkey'"):
            revoke_api_key(conn, "nosuchkey")
