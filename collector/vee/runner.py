"""Run VEE over a period: load in bulk, validate, estimate, and write the results.

Results for readings in [start, end) replace earlier results for the same period, so a rerun (after
late readings, or an edit) is safe. A read closing a gap whose estimates reach back before the load
(its opening read not loaded) is judged from the meter's last measured read, looked up
(:mod:`collector.vee.long_gaps`); with none at all, its gap flag is kept. Readings
from ``profile_lookback_days`` before ``start`` are loaded too: they give the first interval its
previous read and the estimates their profile.

An estimate next to a measured read that reached the database after the estimate was made (a late
read inside the gap it filled, at its own time rather than on the estimate's key) is deleted
(``reading_history`` keeps it), with every other estimate of its gap, and the gap is estimated
afresh from its opening read: whenever the gap closes in the period, however far back it opened.
A person's edit of an estimate gives way to the meter's own read of its slot, stamped a few seconds
off the estimate's time (:mod:`collector.vee.giving_way`): deleted the same way, its gap estimated
afresh around the read.
An estimate whose step between the measured reads either side is no gap at the interval the meter
was reading at then (a meter now read daily, its first daily steps estimated hourly before the 4th
made the new interval its own) is deleted too, and so is one at the slot a measured read beside it
stands for (written 7 s before a read at 11:00:07 by earlier rounds), and so is one of a meter
whose interval is not known yet (no step of it is a gap until it is), across all the reads loaded
(:mod:`collector.vee.leftovers`). And a gap the run estimates (closing in its period, or any of a
meter whose interval it finds for the first time) whose estimates are not exactly its slots at the
meter's interval then (a daily meter's missing day with 25 hourly estimates earlier code left) has
them deleted and is estimated afresh, so a rerun over a period (``aquami collector vee --from …
--to …``) brings its gaps' estimates to what the rules make now; and such a gap the rules leave for
a person (across a register step, longer than 62 days, or beside a read whose time is wrong) has
its estimates deleted (``vee:no-estimate``) and is flagged "not estimated", in the database where
its opening read lies before the load (:mod:`collector.vee.long_gaps`).

Meters go in batches (``batch_meters``, 2,000, by meter_id), each loaded, validated, estimated and
written in its own transaction before the next is loaded: a reading takes some 400 bytes while a
batch is in memory, and the whole fleet's 28 days at once took 2.8 GB for 10,000 hourly meters. No
rule looks beyond one meter's reads, so the batches give what one batch would.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Literal

import numpy as np
import psycopg

from collector.meter_turns import vee_takes_turns
from collector.store import SAY_WHO, TRANSACTION_CONFLICTS
from collector.unindexable import RefusedMeters, Unindexable
from collector.utility_zone import utility_zone
from collector.vee.config import VeeConfig
from collector.vee.estimation import Estimates, estimate
from collector.vee.giving_way import edits_giving_way
from collector.vee.intervals import read_intervals
from collector.vee.leftovers import (
    estimates_at_read_slots,
    estimates_left_alone,
    estimates_off_slots,
    estimates_outside_gaps,
    measured_neighbours,
)
from collector.vee.long_gaps import (
    LEFT_ALONE_REASON,
    Judged,
    delete_unloaded_left_alone,
    judge_glitch_openings,
    judge_unloaded_openings,
    unloaded_openings,
)
from collector.vee.rules import RULES, Validation, validate
from collector.vee.series import F64, B, Series, load_series
from collector.vee.settings_in_use import record_settings_in_use

log = logging.getLogger(__name__)
#: Says, once per meter, that VEE's work on its reads is too long for the database's indexes.
_UNINDEXABLE = Unindexable(log)
#: The meters whose work a database's indexes refused: later rounds leave them out without trying.
_REFUSED = RefusedMeters()

# How many times a batch PostgreSQL rolled back for a conflict with another transaction (a deadlock
# with the collector's writer or a person's correction) is run again before it is left undone.
_CONFLICT_RETRIES = 2

#: What becomes of a batch left undone, as the warning saying it ends, by who ran VEE: a round's is
#: taken by the next round (collector/vee/rounds.py); a back-run (``aquami collector vee --from …
#: --to …``) has no next round: it exits 1, and a person runs it again.
LEFT_FOR_THE_NEXT_ROUND = "left for the next round"
LEFT_FOR_A_RUN_AGAIN = "left undone: this run exits 1, run the same command again"

_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS vee_staging (
    meter_id text, ts_epoch float8, rule text, detail text, consumption_m3 numeric, volume_m3 numeric
) ON COMMIT DROP
"""


@dataclass
class VeeReport:
    readings: int = 0
    flags: dict[str, int] = field(default_factory=dict)
    discontinuities: int = 0
    estimates: int = 0
    gaps_not_estimated: int = 0
    #: batches rolled back for a conflict with another transaction (a deadlock, a serialization
    #: failure) at each of their runs, and how many meters they held: left undone by this run, for
    #: the next round (or the same back-run again); before, said only in the log
    batches_left: int = 0
    meters_left: int = 0
    #: per meter, the earliest instant (epoch seconds) whose consumption the run changed: the opening
    #: read of each gap it estimated, or 1 µs before each estimate it deleted; the round refreshes
    #: consumption from there (it may be weeks before the round's own period)
    changed_from: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, object]:
        """What the run did, as numbers (the JSON a round or ``aquami collector vee`` prints)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "changed_from"}


def _detail(rule: str, series: Series, v: Validation, i: int) -> str:
    # a gap VEE filled: since the measured read before its estimates
    hours = (v.measured_gap_s[i] if rule == "gap" and v.filled_gap[i] else v.gap_s[i]) / 3600
    if rule == "bad_read":
        return (
            f"register {series.volume[i - 1]:.3f} → {series.volume[i]:.3f} → {series.volume[i + 1]:.3f} m³: "
            "back at once, a bad read (not counted)"
        )
    if rule in ("rollover", "reverse_flow", "replacement", "register_backwards"):
        return f"register {series.volume[i - 1]:.3f} → {series.volume[i]:.3f} m³"
    if rule == "over_max_flow":
        # (after VEE's estimates: the gap's water, since the measured read before them)
        return f"{v.flow_consumption[i]:.3f} m³ in {v.flow_s[i] / 3600:.2f} h exceeds {series.max_flow[i]:g} m³/h"
    if rule == "gap":
        return f"{hours:.1f} h since the previous read"
    if rule == "stuck_register":
        return f"register unchanged at {series.volume[i]:.3f} m³ while flow {series.flow[i]:g} m³/h"
    if rule == "future_timestamp":
        return "timestamp ahead of the collector's clock"
    return f"arrived {(series.received[i] - series.ts[i]) / 86400:.0f} days after its timestamp"


def _stale_estimates(series: Series, since: float) -> B:
    """Estimates whose nearest measured read before or after (same meter) arrived after them, in the
    gaps whose closing measured read is at or after ``since``: the gaps the round estimates again.

    All the estimates between two measured reads have the same two neighbours, so a gap's are
    stale together. Those before ``since`` go too: a round reaching back to a late read starts 1 µs
    before it, and keeping the gap's estimates before the read (100.897 … 101.250 m³ before a real
    100.735) judged the meter's own read a bad_read, which billing then left out for the estimate
    7 s before it, or flagged it over_max_flow, which made the bill line incomplete. A gap closing
    before ``since``, or opening before the series, is not estimated by this round, so its
    estimates stay (nothing is lost)."""
    before, after, both = measured_neighbours(series)
    received = series.received
    stale = (series.quality == "estimated") & ((received[before] > received) | (received[after] > received))
    # both of the gap's measured reads loaded, or the round could not estimate it again (a gap
    # opening more than the look-back's 28 days before its late read)
    return stale & both & (series.ts[after] >= since)


def _keys(series: Series, mask: B) -> tuple[list[str], list[float]]:
    """(meter ids, epoch seconds) of the readings in ``mask``."""
    return [series.meter_ids[m] for m in series.meter[mask].tolist()], series.ts[mask].tolist()


def _stored_intervals(conn: psycopg.Connection, series: Series) -> F64:
    """Each meter's read interval as earlier rounds found it (``meters.read_interval_s``), per
    meter code; NaN where none has."""
    rows = conn.execute(
        "SELECT meter_id, read_interval_s FROM meters WHERE meter_id = ANY (%s) AND read_interval_s IS NOT NULL",
        (series.meter_ids,),
    ).fetchall()
    found: dict[str, int] = {meter: seconds for meter, seconds in rows}
    return np.array([float(found.get(m, np.nan)) for m in series.meter_ids], dtype=float)


def run_vee(
    conn: psycopg.Connection,
    start: datetime,
    end: datetime,
    config: VeeConfig | None = None,
    *,
    now: datetime | None = None,
    meters: list[str] | None = None,
    estimate_gaps: bool = True,
    left_for: str = LEFT_FOR_THE_NEXT_ROUND,
) -> VeeReport:
    """Validate (and estimate) readings in [start, end) of ``meters`` (every meter when None), in
    batches of ``config.batch_meters`` meters by meter_id, each loaded, validated, estimated and
    written (one transaction) before the next; the results are those of one batch, as every rule
    looks at one meter's reads only. ``left_for``: what the warning of a batch left after its
    conflicts says becomes of it (:data:`LEFT_FOR_THE_NEXT_ROUND`, :data:`LEFT_FOR_A_RUN_AGAIN`).

    ``estimate_gaps`` False: no gap is estimated, no gap's estimates are replaced for being off its
    slots, and an interval found for the first time is not stored: stored, the next run took it as
    found before and never estimated the meter's gaps closing before its own period."""
    config = config or VeeConfig()
    record_settings_in_use(conn, config)  # what a person's correction is judged by (settings_in_use)
    if not conn.autocommit:  # as a batch's writes are: a batch rolled back below takes nothing else with it
        conn.commit()
    now_s = (now or datetime.now(UTC)).timestamp()
    if meters is None:
        ids = [row[0] for row in conn.execute("SELECT meter_id FROM meters ORDER BY meter_id").fetchall()]
    else:
        ids = sorted(set(meters))
    database = _database(conn)
    refused = _REFUSED.of(database)
    if refused:  # (said when first refused; each would be refused again, after a batch's halving)
        ids = [meter for meter in ids if meter not in refused]
    zone = utility_zone(conn)
    report = VeeReport(flags=dict.fromkeys((*RULES, "conflicting_duplicate"), 0))
    size = max(config.batch_meters, 1)
    # the long gaps' estimates batches deleted, committed whatever becomes of the rest of their batch
    long_gaps: dict[str, float] = {}
    for first in range(0, len(ids), size):
        _run_what_fits(
            conn,
            report,
            ids[first : first + size],
            lambda batch: _run_batch(conn, start, end, config, now_s, zone, batch, estimate_gaps, long_gaps),
            lambda meter: _REFUSED.add(database, meter),
            left_for,
        )
    _add(report, VeeReport(changed_from=long_gaps))
    return report


def _database(conn: psycopg.Connection) -> str:
    """Which database ``conn`` is on, as :data:`_REFUSED` knows it: its server and name."""
    return f"{conn.info.host}:{conn.info.port}/{conn.info.dbname}"


def _run_what_fits(
    conn: psycopg.Connection,
    report: VeeReport,
    meters: list[str],
    run: Callable[[list[str]], VeeReport],
    refused: Callable[[str], None],
    left_for: str = LEFT_FOR_THE_NEXT_ROUND,
) -> None:
    """``run`` the batch of ``meters`` into ``report``; should an index refuse a row of it
    (``ProgramLimitExceeded``), each half again, down to the meter refused, which is left out, said
    once (:class:`collector.unindexable.Unindexable`) and given to ``refused`` (remembered: later
    rounds leave it out up front). ``left_for``: as :func:`_run_retrying_conflicts` takes it.

    A meter id of 2,680 bytes, stored before register-meters checked ids, is in ``readings`` but
    too long for ``vee_flags``' key (a rule's name beside the time) and ``reading_history``'s.
    Before, the round failed at every run: no flag nor estimate for any meter of that batch (2,000
    meters), nor the round's consumption refresh for any meter. Halving costs some 2 log2(n)
    batches more (22 for 2,000 meters, some 4,000 meters in all), where one meter at a time took n."""
    try:
        _add(report, _run_retrying_conflicts(conn, meters, run, left_for))
        return
    except psycopg.errors.ProgramLimitExceeded:
        # the batch's writes are rolled back (a savepoint), and the transaction its load opened: the
        # batches before it are committed, and nothing else is in it
        if not conn.autocommit:
            conn.rollback()
    if len(meters) == 1:
        refused(meters[0])
        _UNINDEXABLE.reads_refused(meters[0])
        return
    half = len(meters) // 2
    _run_what_fits(conn, report, meters[:half], run, refused, left_for)
    _run_what_fits(conn, report, meters[half:], run, refused, left_for)


def _run_retrying_conflicts(
    conn: psycopg.Connection,
    meters: list[str],
    run: Callable[[list[str]], VeeReport],
    left_for: str = LEFT_FOR_THE_NEXT_ROUND,
) -> VeeReport:
    """``run`` the batch of ``meters``, again at once should PostgreSQL roll it back for a conflict
    with another transaction (its writes rolled back whole: nothing half written), up to
    ``_CONFLICT_RETRIES`` times; then the batch is left undone, said at WARNING, ending with what
    becomes of it (``left_for``: the next round's, or the back-run run again), and a report of it
    left (``batches_left``, ``meters_left``: nothing else) returned: the run goes on with its other
    batches.

    Before, a deadlock ended the round there (``run_vee`` raised): the batches after it, the round's
    consumption refresh and its late_readings notes waited for the next round, an hour later. And a
    back-run's warning said its batch was left for the next round, which a back-run has none of."""
    for attempt in range(_CONFLICT_RETRIES + 1):
        try:
            return run(meters)
        except TRANSACTION_CONFLICTS as conflict:
            if not conn.autocommit:
                conn.rollback()  # (as for ProgramLimitExceeded: the batches before it are committed)
            reason = str(conflict).splitlines()[0] if str(conflict) else type(conflict).__name__
            if attempt < _CONFLICT_RETRIES:
                log.info("vee batch of %d meters (%s…) conflicted (%s); run again", len(meters), meters[0], reason)
                continue
            log.warning(
                "vee batch of %d meters (%s…) conflicted %d times (%s); %s",
                len(meters),
                meters[0],
                attempt + 1,
                reason,
                left_for,
            )
    return VeeReport(batches_left=1, meters_left=len(meters))


def _add(total: VeeReport, batch: VeeReport) -> None:
    total.readings += batch.readings
    for rule, count in batch.flags.items():
        total.flags[rule] = total.flags.get(rule, 0) + count
    total.discontinuities += batch.discontinuities
    total.estimates += batch.estimates
    total.gaps_not_estimated += batch.gaps_not_estimated
    total.batches_left += batch.batches_left
    total.meters_left += batch.meters_left
    for meter, since in batch.changed_from.items():
        total.changed_from[meter] = min(since, total.changed_from.get(meter, since))


def _run_batch(
    conn: psycopg.Connection,
    start: datetime,
    end: datetime,
    config: VeeConfig,
    now_s: float,
    zone: tzinfo,
    meters: list[str],
    estimate_gaps: bool,
    long_gaps: dict[str, float],
) -> VeeReport:
    """One batch of meters: load, validate, estimate and write, in one transaction, which holds the
    meters' turns (:func:`collector.meter_turns.vee_takes_turns`) from before the load until it
    commits: a person's correction of one of them waits for it, or it for the correction. On a
    connection in autocommit, the transaction is the batch's own.

    A gap whose estimates reach back before the load, which the rules leave for a person, has them
    deleted (:func:`collector.vee.long_gaps.delete_unloaded_left_alone`) and committed first, before
    the batch loads its meters again, in a transaction of its own, and taking its turns again: their
    consumption changed from the opening read on, whatever becomes of the rest of the batch, goes into
    ``long_gaps``. Kept to the end of the batch, those rows were locked while the batch went on to
    lock the other estimates it deletes, of meters before theirs: ingest replacing both meters'
    estimates with the meters' reads (in (meter, time) order) held the earlier meter's and waited for
    the later one's, a deadlock. (One more commit, only for a batch that deletes such a gap.)"""
    load_from = start - timedelta(days=config.profile_lookback_days)
    with _transaction_of_its_own(conn):
        vee_takes_turns(conn, meters)
        series = load_series(conn, load_from, end, config, meters)
        deleted: dict[str, float] = {}
        if estimate_gaps:  # (a gap whose estimates reach back before the load: deleted in the database)
            deleted = delete_unloaded_left_alone(conn, series, config, series.ts >= start.timestamp(), now_s)
        if not deleted:
            return _run_batch_in_turn(conn, start, end, config, now_s, zone, meters, series, estimate_gaps)
    for meter, since in deleted.items():
        long_gaps[meter] = min(since, long_gaps.get(meter, since))
    with _transaction_of_its_own(conn):
        vee_takes_turns(conn, meters)
        series = load_series(conn, load_from, end, config, meters)
        return _run_batch_in_turn(conn, start, end, config, now_s, zone, meters, series, estimate_gaps)


@contextmanager
def _transaction_of_its_own(conn: psycopg.Connection) -> Iterator[None]:
    """The block in a transaction of its own, committed at its end: on a connection in autocommit,
    one opened for it; otherwise the connection's, whose work before was committed (``run_vee``
    commits before its first batch, and each batch at its end)."""
    if conn.autocommit:
        with conn.transaction():
            yield
        return
    yield
    conn.commit()


def _run_batch_in_turn(
    conn: psycopg.Connection,
    start: datetime,
    end: datetime,
    config: VeeConfig,
    now_s: float,
    zone: tzinfo,
    meters: list[str],
    series: Series,
    estimate_gaps: bool,
) -> VeeReport:
    """The batch of ``meters``, their reads ``series``, loaded in the turn the transaction holds."""
    stored = _stored_intervals(conn, series)
    giving_way = edits_giving_way(series, np.where(np.isfinite(stored), stored, float(config.expected_interval_s)))
    giving_way &= series.ts >= start.timestamp()
    edit_keys = _keys(series, giving_way)
    if giving_way.any():
        series = series.without(giving_way)
    stale = _stale_estimates(series, start.timestamp())
    stale_keys = _keys(series, stale)
    if stale.any():
        series = series.without(stale)
    intervals = read_intervals(series, config, zone, stored)
    # found for the first time: no round before judged the meter's steps for gaps (collector/vee/rules.py)
    first_found = intervals.known & ~np.isfinite(stored)
    neighbours = measured_neighbours(series)
    outside = estimates_outside_gaps(series, neighbours, intervals.read_interval_s, config, intervals.known)
    at_read = estimates_at_read_slots(series, neighbours, intervals.read_interval_s, intervals.read_phase_s, zone)
    at_read &= ~outside
    outside_keys, at_read_keys = _keys(series, outside), _keys(series, at_read)
    if (outside | at_read).any():
        series, intervals = series.without(outside | at_read), intervals.without(outside | at_read)
    off_slots_keys: tuple[list[str], list[float]] = ([], [])
    alone_keys: tuple[list[str], list[float]] = ([], [])
    if estimate_gaps:  # (replaced: a run that estimates nothing leaves them for one that does)
        # the gaps this run estimates: those closing in its period, and all of a meter found now
        estimated_gaps = (series.ts >= start.timestamp()) | first_found[series.meter]
        # those the rules now leave for a person, first: their estimates go, none is made again
        neighbours = measured_neighbours(series)
        alone = estimates_left_alone(series, neighbours, intervals, estimated_gaps, config, now_s, zone)
        alone_keys = _keys(series, alone)
        if alone.any():
            series, intervals = series.without(alone), intervals.without(alone)
            estimated_gaps, neighbours = estimated_gaps[~alone], measured_neighbours(series)
        off_slots = estimates_off_slots(
            series, neighbours, intervals.read_interval_s, intervals.read_phase_s, estimated_gaps, zone
        )
        off_slots_keys = _keys(series, off_slots)
        if off_slots.any():
            series, intervals = series.without(off_slots), intervals.without(off_slots)
    validation = validate(series, config, now_s, zone, intervals)
    # a gap's opening read from before the look-back is judged with the read before it where that
    # makes it a glitch (a bad_read): such a gap is left for a person (collector/vee/long_gaps.py)
    series, intervals, validation = judge_glitch_openings(
        conn, Judged(series, intervals, validation), stored, config, now_s, zone
    )
    in_period = series.ts >= start.timestamp()
    # a gap whose estimates reach back before the load (its opening read not loaded: a 40-day silence,
    # estimated, under a round's 28-day look-back) is judged from the meter's last measured read,
    # looked up (collector/vee/long_gaps.py); one with none at all cannot be: its flag stays
    opening_unloaded = unloaded_openings(series, in_period)
    unjudged = judge_unloaded_openings(conn, series, validation, config, opening_unloaded)
    unjudged_keys = _keys(series, unjudged)
    estimates = (
        estimate(series, validation, config, zone, since=start.timestamp(), whole=first_found)
        if estimate_gaps
        else None
    )
    # the gaps of a meter whose interval is found for the first time are flagged wherever they close
    before_period = first_found[series.meter] & ~in_period
    gone = (edit_keys, stale_keys, outside_keys, at_read_keys, alone_keys, off_slots_keys)
    deleted: tuple[list[str], list[float]] = ([m for k in gone for m in k[0]], [t for k in gone for t in k[1]])
    report = VeeReport(readings=int(in_period.sum()), changed_from=_changed_from(series, deleted, estimates))
    with conn.transaction():
        conn.execute(_STAGING)
        _delete_estimates_all(
            conn,
            [
                Deletion(
                    edit_keys,
                    "vee:actual-read",
                    "the meter's own read of this slot came: the edited estimate gives way",
                    quality="edited",
                ),
                Deletion(
                    stale_keys, "vee:re-estimate", "a measured read came into its gap: the gap is estimated again"
                ),
                Deletion(
                    outside_keys,
                    "vee:no-gap",
                    "the step between the measured reads either side is no gap at the meter's interval then",
                ),
                Deletion(at_read_keys, "vee:read-slot", "a measured read beside it stands for the same slot"),
                Deletion(
                    alone_keys, "vee:no-estimate", LEFT_ALONE_REASON.format(days=config.max_estimated_gap_s / 86400)
                ),
                Deletion(
                    off_slots_keys,
                    "vee:re-slot",
                    "its gap's estimates are not the meter's slots at its interval then: the gap is estimated again",
                ),
            ],
        )
        scope = "ts >= %(start)s AND ts < %(end)s AND (%(meters)s::text[] IS NULL OR meter_id = ANY (%(meters)s))"
        params = {"start": start, "end": end, "meters": meters}
        conn.execute(
            f"DELETE FROM vee_flags WHERE {scope} AND NOT (rule = 'gap' AND (meter_id, ts) IN "
            "(SELECT s.meter_id, to_timestamp(s.ts_epoch) FROM unnest(%(kept)s::text[], %(kept_ts)s::float8[]) "
            "AS s(meter_id, ts_epoch)))",
            {**params, "kept": unjudged_keys[0], "kept_ts": unjudged_keys[1]},
        )
        conn.execute(f"DELETE FROM register_discontinuities WHERE {scope}", params)
        not_estimated = set() if estimates is None else set(estimates.not_estimated.tolist())
        with conn.cursor().copy("COPY vee_staging (meter_id, ts_epoch, rule, detail, consumption_m3) FROM STDIN") as cp:
            for rule in RULES:
                flagged = np.flatnonzero(validation.masks[rule] & in_period)
                report.flags[rule] = len(flagged)
                if rule == "gap":
                    flagged = np.flatnonzero(validation.masks[rule] & (in_period | before_period))
                for i in flagged.tolist():
                    detail = _detail(rule, series, validation, i)
                    if rule == "gap" and validation.filled_gap[i]:
                        detail += "; estimated"  # (by an earlier run, whose estimates stand)
                    elif rule == "gap" and estimates is not None:
                        estimated = i not in not_estimated
                        detail += "; estimated" if estimated else "; not estimated (a register step, or too long)"
                    cp.write_row((series.meter_ids[series.meter[i]], series.ts[i], rule, detail, None))
            steps = np.flatnonzero((validation.step_kind != "") & in_period)
            for i in steps.tolist():
                c = validation.step_consumption[i]
                cp.write_row(
                    (
                        series.meter_ids[series.meter[i]],
                        series.ts[i],
                        "step:" + validation.step_kind[i],
                        _detail("rollover", series, validation, i),
                        None if np.isnan(c) else f"{c:.6f}",
                    )
                )
        conn.execute(
            "INSERT INTO vee_flags (meter_id, ts, rule, detail) "
            "SELECT meter_id, to_timestamp(ts_epoch), rule, detail FROM vee_staging WHERE rule NOT LIKE 'step:%' "
            # (a gap before the period, of a meter whose interval is found now, may have a flag)
            "ON CONFLICT (meter_id, ts, rule) DO UPDATE SET detail = EXCLUDED.detail, flagged_at = now()"
        )
        cur = conn.execute(
            "INSERT INTO register_discontinuities (meter_id, ts, kind, consumption_m3, detail) "
            "SELECT meter_id, to_timestamp(ts_epoch), substr(rule, 6), consumption_m3, detail "
            "FROM vee_staging WHERE rule LIKE 'step:%'"
        )
        report.discontinuities = cur.rowcount
        cur = conn.execute(
            f"""INSERT INTO vee_flags (meter_id, ts, rule, detail)
            SELECT meter_id, ts, 'conflicting_duplicate', count(*) || ' other value(s) received for this time'
            FROM reading_conflicts WHERE {scope} GROUP BY meter_id, ts""",
            params,
        )
        report.flags["conflicting_duplicate"] = cur.rowcount
        # an interval found for the first time is stored by a run that estimates the meter's gaps: stored
        # by one that does not, the next run took it as found before and never estimated the gaps
        # closing before its period (collector/vee/estimation.py, ``whole``)
        _write_intervals(conn, series, validation, leave=None if estimate_gaps else first_found)
        if estimates is not None:
            report.estimates = _write_estimates(conn, series, estimates)
            report.gaps_not_estimated = len(not_estimated)
    return report


@dataclass(frozen=True)
class Deletion:
    """Estimates to delete at ``keys`` (meter ids, epoch seconds), the history noting who (``by``) and
    why: VEE's own (``quality`` estimated), or a person's edits of them (edited)."""

    keys: tuple[list[str], list[float]]
    by: str
    reason: str
    quality: Literal["estimated", "edited"] = "estimated"


# The rows a batch deletes, locked at once in (meter, time) order, as ingest locks the estimates
# it replaces with actual reads (collector/store.py, _LOCK_ESTIMATES).
_LOCK_ESTIMATES = """
SELECT count(*) FROM (
    SELECT 1 FROM readings r JOIN unnest(%s::text[], %s::float8[]) AS s(meter_id, ts_epoch)
        ON r.meter_id = s.meter_id AND r.ts = to_timestamp(s.ts_epoch)
    WHERE r.quality IN ('estimated', 'edited')
    ORDER BY r.meter_id, r.ts
    FOR UPDATE OF r
) locked
"""


def _delete_estimates_all(conn: psycopg.Connection, deletions: Sequence[Deletion]) -> None:
    """A batch's deletions of estimates, each with its own who and why, their rows locked first, all
    at once in (meter, time) order.

    Before, each deletion took its rows as it came (a reason's, then the next's), and ingest
    replacing estimates with the meter's actual reads took them in its plan's order: VEE holding the
    02:00 estimate and waiting for the 01:00 one, which ingest held while waiting for 02:00. One
    side failed on the deadlock: ingest's batch as though the database were away (its messages
    redelivered a second later), or VEE's round, its remaining batches left until the next round.
    Now whichever comes second waits for the other, holding nothing it needs; an estimate ingest
    replaced meanwhile is an actual read, which no deletion touches."""
    meter_ids = [meter for deletion in deletions for meter in deletion.keys[0]]
    if meter_ids:
        conn.execute(_LOCK_ESTIMATES, (meter_ids, [ts for deletion in deletions for ts in deletion.keys[1]]))
    for deletion in deletions:
        if deletion.keys[0]:
            conn.execute(SAY_WHO, (deletion.by, deletion.reason))
            conn.execute(
                "DELETE FROM readings r USING unnest(%s::text[], %s::float8[]) AS s(meter_id, ts_epoch) "
                "WHERE r.meter_id = s.meter_id AND r.ts = to_timestamp(s.ts_epoch) AND r.quality = %s",
                (*deletion.keys, deletion.quality),
            )


def _changed_from(
    series: Series, deleted: tuple[list[str], list[float]], estimates: Estimates | None
) -> dict[str, float]:
    """Per meter, the earliest instant whose interval the run changes: 1 µs before a ``deleted``
    estimate (the interval it closed), and the opening read of a gap it estimates."""
    changed: dict[str, float] = {}
    points = list(zip(deleted[0], (t - 1e-6 for t in deleted[1]), strict=True))
    if estimates is not None and len(estimates):
        points += zip(
            (series.meter_ids[m] for m in estimates.meter.tolist()), estimates.gap_start.tolist(), strict=True
        )
    for meter, since in points:
        changed[meter] = min(since, changed.get(meter, since))
    return changed


def _write_intervals(conn: psycopg.Connection, series: Series, validation: Validation, leave: B | None) -> None:
    """Each meter's own read interval, where VEE found one, for billing (collector migration 0059);
    not of the meters in ``leave`` (per meter code)."""
    known = np.flatnonzero(validation.interval_known & (True if leave is None else ~leave))
    conn.execute(
        "UPDATE meters m SET read_interval_s = s.interval_s "
        "FROM unnest(%s::text[], %s::int[]) AS s(meter_id, interval_s) "
        "WHERE m.meter_id = s.meter_id AND m.read_interval_s IS DISTINCT FROM s.interval_s",
        ([series.meter_ids[i] for i in known.tolist()], validation.interval_s[known].astype(int).tolist()),
    )


def _write_estimates(conn: psycopg.Connection, series: Series, estimates: Estimates) -> int:
    """Insert ``estimates`` (those whose key is stored meanwhile left out); how many were inserted.

    In the order ingest inserts a batch's readings (collector/store.py, ``in_key_order``): meter
    ids byte by byte (``COLLATE "C"``, whatever the database's collation), then time. Two
    transactions inserting the same keys of ``readings``' unique index wait on each other; in
    different orders they deadlocked: ingest, inserting as the reads arrived, held B 07:00 and
    waited (for C 07:00, another writer's) while this inserted A 07:00 and waited for B, then
    ingest came to A (tests/collector/test_ingest_insert_order.py). One side was rolled back and
    run again: nothing lost, a batch's work thrown away. The ORDER BY costs nothing measurable
    (73,180 estimates: 436 ms against 448 ms without, best of 5, collation C); without it the order was
    ``vee_staging``'s scan order, meter codes in the database's collation."""
    if not len(estimates):
        return 0
    conn.execute("TRUNCATE vee_staging")
    with conn.cursor().copy("COPY vee_staging (meter_id, ts_epoch, rule, detail, volume_m3) FROM STDIN") as cp:
        for i in range(len(estimates)):
            gap = (
                f"gap {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime(estimates.gap_start[i]))} to "
                f"{time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime(estimates.gap_end[i]))}"
            )
            cp.write_row(
                (
                    series.meter_ids[estimates.meter[i]],
                    estimates.ts[i],
                    "vee:" + estimates.method[i],
                    f"{estimates.method[i]} estimate in the {gap}",
                    f"{estimates.volume[i]:.6f}",
                )
            )
    cur = conn.execute(
        "INSERT INTO readings (meter_id, ts, volume_m3, quality, quality_by, quality_reason) "
        "SELECT meter_id, to_timestamp(ts_epoch), volume_m3, 'estimated', rule, detail FROM vee_staging "
        'ORDER BY meter_id COLLATE "C", ts_epoch '
        "ON CONFLICT (meter_id, ts) DO NOTHING"
    )
    return cur.rowcount
