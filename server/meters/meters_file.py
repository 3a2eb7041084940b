"""A meters file recorded (``aquami server register-meters``): its meters, its installations (the job
cards) and their service points' districts, in the caller's transaction, giving way to a consumption
refresh under way.

An installation's statement takes the consumption refreshes' turn (server migration 0083), which a VEE
round's refresh of the whole fleet holds for seconds. The file's meters' rows of ``meters`` (and the
new service points) are written before it, and were held while the job card waited there: the
collector's writer registering one of those meters (``INSERT … ON CONFLICT DO NOTHING``: a meter fitted
and heard before the clerk's file committed, or any meter of a collector just started) waited behind
the job card for the rest of the refresh, and every message after it. Now what comes before the first
installation is written, the turn tried, and when a refresh holds it, all of it rolled back, the
refresh waited for holding nothing, and written again (:func:`collector.meter_turns.giving_way_to_a_refresh`):
the order of what the job card holds (its meters' rows, its service points, then the turn, then its
installations) is what it was, so no wait is added that could close a cycle.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import psycopg

from collector.meter_turns import giving_way_to_a_refresh
from server.meters.repository import (
    Installation,
    add_service_points,
    cards_against_reads,
    cards_changed,
    place_service_points,
    record_installations,
    recorded_cards,
    register_meters,
)
from server.meters.withdrawals import refuse_withdrawn


@dataclass(frozen=True)
class Recorded:
    """What a file recorded said: how many withdrawn installations it reinstated, and its job cards
    that contradict the meters' reads (:func:`server.meters.repository.cards_against_reads`)."""

    reinstated: int
    contradicted: list[str]


def record_meters_file(
    conn: psycopg.Connection,
    meters: list[tuple[str, str | None, str]],
    bulk: Collection[str] | None,
    installations: list[Installation],
    given: Collection[str],
    *,
    reinstate_withdrawn: bool,
) -> Recorded:
    """Record the file's ``meters`` (:func:`server.meters.repository.register_meters`, ``bulk`` as it
    takes it) and ``installations`` (the columns ``given``), refusing a withdrawn one recorded again
    unless ``reinstate_withdrawn``, in the caller's open transaction. Raises ValueError, as those do;
    the caller's rollback then stores nothing."""

    def before_the_installations() -> tuple[int, dict[tuple[str, datetime], tuple[Decimal | None, Decimal | None]]]:
        register_meters(conn, meters, bulk=bulk)
        reinstated = refuse_withdrawn(conn, installations, "", reinstate=reinstate_withdrawn)
        cards_before = recorded_cards(conn, [meter_id for meter_id, _, _ in meters])
        add_service_points(conn, installations)
        return reinstated, cards_before

    reinstated, cards_before = giving_way_to_a_refresh(conn, before_the_installations)
    record_installations(conn, installations, given=given)
    place_service_points(conn, [meter_id for meter_id, _, _ in meters])
    return Recorded(reinstated, cards_against_reads(conn, cards_changed(installations, cards_before)))
