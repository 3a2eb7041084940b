"""The VEE settings a person's correction is judged by: the ones VEE itself last ran with.

A correction of a meter's newest read is refused when the water since the read before it is more
than the meter passes (collector.vee.register_order), as VEE's ``over_max_flow`` judges an interval:
by the meter's own maximum flow, else ``default_max_flow_m3h``, with ``max_flow_slack``. Those two are
the collector's to configure (``aquami collector vee --config``); the server, judging a correction,
has no such file. So every VEE run records them (server migration 0065's ``vee_settings``) and the
check reads them: a correction is refused where VEE would flag it, and taken where VEE would not.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import tuple_row

from collector.vee.config import VeeConfig


def record_settings_in_use(conn: psycopg.Connection, config: VeeConfig) -> None:
    """Record ``config``'s maximum-flow settings as the ones VEE judges by (in the caller's
    transaction); the row is written only when they change."""
    conn.execute(
        """
        INSERT INTO vee_settings (default_max_flow_m3h, max_flow_slack) VALUES (%s, %s)
        ON CONFLICT (one_row) DO UPDATE
        SET default_max_flow_m3h = EXCLUDED.default_max_flow_m3h, max_flow_slack = EXCLUDED.max_flow_slack,
            recorded_at = now()
        WHERE (vee_settings.default_max_flow_m3h, vee_settings.max_flow_slack)
              IS DISTINCT FROM (EXCLUDED.default_max_flow_m3h, EXCLUDED.max_flow_slack)
        """,
        (config.default_max_flow_m3h, config.max_flow_slack),
    )


def settings_in_use(conn: psycopg.Connection) -> VeeConfig:
    """The settings VEE last ran with (its maximum-flow ones; the rest VeeConfig's defaults, which no
    correction's check reads), or VeeConfig's defaults while no VEE run has recorded any."""
    with conn.cursor(row_factory=tuple_row) as cur:  # (the server's connections answer dicts)
        row = cur.execute("SELECT default_max_flow_m3h, max_flow_slack FROM vee_settings").fetchone()
    if row is None:
        return VeeConfig()
    return VeeConfig(default_max_flow_m3h=float(row[0]), max_flow_slack=float(row[1]))
