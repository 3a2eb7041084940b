"""Every text column a btree index holds is bounded by what its writers store, or written by aquami
alone. PostgreSQL refuses an index row over 2,704 bytes mid-statement (``ProgramLimitExceeded``):
a district's name had no bound and stopped register-meters with a traceback (see
test_district_length.py). A new index on a text column fails here until it is listed with its bound."""

from __future__ import annotations

import psycopg

#: Every text column a btree index holds, and what bounds what its writers store: PostgreSQL refuses
#: an index row over 2,704 bytes, so each needs a bound checked before writing, or no writer but
#: aquami's own code (kinds, statuses, the migrations' rows, generated ids).
IDENTIFIER = "an identifier: the MQTT contract's schema, register-meters, register-accounts, assign-meters"
DISTRICT = "a district: DMA_MAX_LENGTH, register-meters (alerts, enquiries and consumption copy the meter's)"
ALERT_ID = "kind/meter id or dma:district/time[/source]: make_alert_id"
OWN = "aquami's own: its code's words and generated ids, or its migrations' rows"
HASH = "a SHA-256 in hex, held to 64 characters by its table's CHECK (server migration 0069)"
TEXT_KEYS = {
    "account_membership_changes": {"account_id": IDENTIFIER, "meter_id": IDENTIFIER},
    "accounts": {"account_id": IDENTIFIER},
    "alert_enquiry_rules": {"alert_kind": OWN},
    "alerts": {"alert_id": ALERT_ID, "dma": DISTRICT, "kind": OWN, "meter_id": IDENTIFIER, "status": OWN},
    "api_keys": {"key_id": OWN},
    "consumption_daily": {"meter_id": IDENTIFIER},
    "consumption_hourly": {"meter_id": IDENTIFIER},
    "dead_letters": {"gateway_id": IDENTIFIER, "meter_id": IDENTIFIER},
    "dma_consumption_hourly": {"dma": DISTRICT},
    "enquiries": {
        "account_id": IDENTIFIER,
        "alert_id": ALERT_ID,
        "category": OWN,
        "dma": DISTRICT,
        "meter_id": IDENTIFIER,
        "priority": OWN,
        "service_point_id": IDENTIFIER,
        "source": OWN,
        "status": OWN,
    },
    "events": {"event": OWN, "gateway_id": IDENTIFIER, "meter_id": IDENTIFIER, "state": OWN},
    "gateway_status": {"gateway_id": IDENTIFIER},
    "meter_gateways": {"gateway_id": IDENTIFIER, "meter_id": IDENTIFIER},
    "meter_installations": {"meter_id": IDENTIFIER, "service_point_id": IDENTIFIER},
    "meters": {"dma": DISTRICT, "meter_id": IDENTIFIER},
    "open311_posts": {
        "idempotency_key": "the Idempotency-Key header: 1 to 255 printable ASCII characters (server.open311.router)",
        "key_id": OWN,
    },
    "open311_service_attributes": {"code": OWN, "service_code": OWN},
    "open311_services": {"category": OWN, "service_code": OWN},
    "reading_conflicts": {"alarms": "the contract's alarm names, each once", "meter_id": IDENTIFIER},
    "reading_history": {"meter_id": IDENTIFIER},
    "readings": {"meter_id": IDENTIFIER},
    "register_discontinuities": {"meter_id": IDENTIFIER},
    "schema_migrations": {"name": OWN},
    "service_agreements": {"account_id": IDENTIFIER, "service_point_id": IDENTIFIER},
    "service_points": {"service_point_id": IDENTIFIER},
    "sign_in_links": {"token_hash": HASH},
    "sign_in_sessions": {"secret_hash": HASH},
    "storage_features": {"feature": OWN},
    "utility_settings": {"name": OWN},
    "vee_flags": {"meter_id": IDENTIFIER, "rule": OWN},
    # copied from the row withdrawn (service_agreements', meter_installations'), as it was recorded
    "withdrawn_agreements": {"service_point_id": IDENTIFIER},
    "withdrawn_installations": {"meter_id": IDENTIFIER},
}


def test_every_text_column_a_btree_index_holds_has_a_bound(migrated_database_url: str) -> None:
    """A new index on a text column (an account's name, a reading's reason) fails this until its
    writers bound what they store, and it is listed here with the bound."""
    with psycopg.connect(migrated_database_url) as conn:
        indexed = conn.execute(
            """
            SELECT DISTINCT c.relname, a.attname
            FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am am ON am.oid = i.relam
            JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(x.indkey)
            WHERE n.nspname = 'public' AND am.amname = 'btree'
              AND a.atttypid IN ('text'::regtype, 'text[]'::regtype, 'varchar'::regtype, 'jsonb'::regtype)
            """
        ).fetchall()
    assert sorted(indexed) == sorted((table, column) for table, columns in TEXT_KEYS.items() for column in columns)
