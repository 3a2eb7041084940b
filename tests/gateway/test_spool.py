"""The spool: durable, ordered, numbered batches that survive restarts, and a size limit with a policy."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.spool import Spool, SpoolFull


def reading(n: int) -> dict[str, object]:
    return {"meter_id": f"WM-{n}", "ts": f"2026-01-01T00:00:{n % 60:02d}Z", "volume_m3": float(n)}


def test_batches_are_numbered_in_order_and_leave_only_when_acknowledged(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    spool.append([reading(n) for n in range(7)])
    first, second = spool.seal(5), spool.seal(5)
    assert first is not None and second is not None and spool.seal(5) is None
    assert (first.batch_seq, second.batch_seq) == (1, 2)
    assert [r["meter_id"] for r in first.readings + second.readings] == [f"WM-{n}" for n in range(7)]
    assert spool.depth() == 7
    assert spool.acknowledge(2) == 2 and spool.depth() == 5
    assert [b.batch_seq for b in spool.sealed_batches()] == [1]
    spool.close()


def test_sealed_batches_and_batch_seq_survive_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    spool.append([reading(n) for n in range(4)])
    sealed = spool.seal(2)
    assert sealed is not None
    spool.close()  # as good as a crash: every commit is on disk
    again = Spool(tmp_path / "s.sqlite")
    assert again.depth() == 4
    assert [(b.batch_seq, len(b.readings)) for b in again.sealed_batches()] == [(1, 2)]
    assert again.sealed_batches()[0].readings == sealed.readings
    nxt = again.seal(10)
    assert nxt is not None and nxt.batch_seq == 2 and len(nxt.readings) == 2
    again.close()


def test_drop_oldest_keeps_the_newest_and_reports_what_it_dropped(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_readings=10, drop_oldest=True)
    assert spool.append([reading(n) for n in range(8)]).dropped == 0
    appended = spool.append([reading(n) for n in range(8, 13)])
    assert (appended.stored, appended.dropped) == (5, 3)
    assert spool.depth() == 10 and spool.dropped_total == 3 and spool.is_full()
    sealed = spool.seal(100)
    assert sealed is not None
    assert [r["meter_id"] for r in sealed.readings] == [f"WM-{n}" for n in range(3, 13)]
    spool.close()


def test_without_drop_the_limit_only_reports_full(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_readings=3, drop_oldest=False)
    assert spool.append([reading(n) for n in range(2)]).dropped == 0 and not spool.is_full()
    assert spool.append([reading(n) for n in range(2, 5)]).dropped == 0
    assert spool.is_full() and spool.depth() == 5  # stop_polling: the gateway stops asking, nothing is lost
    spool.close()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=12), st.integers(5, 40))
def test_depth_metric_matches_the_rows(tmp_path_factory, sizes: list[int], limit: int) -> None:
    spool = Spool(tmp_path_factory.mktemp("spool") / "s.sqlite", max_readings=limit)
    n = 0
    for size in sizes:
        spool.append([reading(n + i) for i in range(size)])
        n += size
        if size % 3 == 0:
            sealed = spool.seal(7)
            if sealed is not None:
                spool.acknowledge(sealed.batch_seq)
        rows = spool._db.execute("SELECT count(*) FROM readings").fetchone()[0]
        assert spool.depth() == rows <= limit
    spool.close()


def test_events_beyond_the_limit_drop_the_oldest_counted_and_said(tmp_path: Path, caplog) -> None:
    """Events wait for the broker up to a limit; beyond it the oldest go. That used to happen
    without a word: now each is counted (the gateway's health shows ``events_dropped``) and the
    first of each thousand is logged."""
    spool = Spool(tmp_path / "s.sqlite")
    try:
        with caplog.at_level("WARNING", logger="gateway.spool"):
            dropped = [spool.add_message("t", b"%d" % n, limit=3) for n in range(6)]
        assert dropped == [0, 0, 0, 1, 1, 1]
        assert spool.messages_dropped_total == 3
        assert [payload for _, _, payload in spool.messages_after(0, 10)] == [b"3", b"4", b"5"]
        assert [r.getMessage() for r in caplog.records if r.name == "gateway.spool"] == [
            "3 events waiting for the broker: the oldest are dropped (1 so far)"
        ]
    finally:
        spool.close()


@settings(max_examples=40, deadline=None)
@given(total=st.integers(1, 60), size=st.integers(1, 30), parts=st.integers(1, 30))
def test_a_resealed_batch_is_the_same_readings_in_order_under_new_higher_batch_seqs(
    tmp_path_factory, total: int, size: int, parts: int
) -> None:
    spool = Spool(tmp_path_factory.mktemp("spool") / "s.sqlite")
    try:
        spool.append([reading(n) for n in range(total)])
        first, *rest = spool.seal_many(size, 3)
        later = spool.seal(size)  # sealed after it: the new batches come after this one too
        seqs = spool.reseal(first.batch_seq, parts)
        assert len(seqs) == -(-len(first.bodies) // parts)
        floor = max([first.batch_seq, *(b.batch_seq for b in rest)] + ([later.batch_seq] if later else []))
        assert all(seq > floor for seq in seqs)
        again = [b for b in spool.sealed_batches(limit=100) if b.batch_seq in seqs]
        assert [b.batch_seq for b in again] == list(seqs)
        assert all(1 <= len(b.bodies) <= parts for b in again)
        assert [body for b in again for body in b.bodies] == first.bodies
        assert first.batch_seq not in {b.batch_seq for b in spool.sealed_batches(limit=100)}
        assert spool.depth() == total
    finally:
        spool.close()


def test_acknowledging_several_batches_is_one_transaction(tmp_path: Path) -> None:
    """The connection autocommits: the deletes of a window of acknowledged batches were one commit,
    and on the gateway's flash one fsync, each."""
    spool = Spool(tmp_path / "s.sqlite")
    spool.append([{"meter_id": f"M{i}", "ts": "2026-01-01T00:00:00Z", "volume_m3": 1.0} for i in range(40)])
    batches = spool.seal_many(5, 8)
    statements: list[str] = []
    spool._db.set_trace_callback(statements.append)
    assert spool.acknowledge_many([b.batch_seq for b in batches]) == 40
    spool._db.set_trace_callback(None)
    assert [s for s in statements if s.split()[0] in ("BEGIN", "COMMIT")] == ["BEGIN IMMEDIATE", "COMMIT"]
    assert spool.depth() == 0
    spool.close()


def _refused(spool: Spool, readings: list[dict[str, object]]) -> str:
    with pytest.raises(SpoolFull) as refused:
        spool.append(readings)
    return str(refused.value)


def test_a_full_spool_says_small_sizes_in_bytes_or_kib_and_one_reading_in_the_singular(tmp_path: Path) -> None:
    """The room left and the reserve said in the unit that reads them (SQLite's page limit is the disk
    here: ``max_page_count``), and the readings refused counted right. Before: "0.0 MiB left …, less
    than the 0.0 MiB kept …; 1 readings refused" of a 32 KiB reserve."""
    path = tmp_path / "s.sqlite"
    spool = Spool(path, reserve_bytes=8 * 4096)
    try:
        (pages,) = spool._db.execute("PRAGMA page_count").fetchone()
        (page_size,) = spool._db.execute("PRAGMA page_size").fetchone()
        spool._db.execute(f"PRAGMA max_page_count = {pages}")  # no page beyond those it has
        tail = "kept to deliver what it holds; {} refused until the broker has taken some"
        assert _refused(spool, [reading(1)]) == (
            f"spool full: 0 bytes left for {path}, less than the 32.0 KiB " + tail.format("1 reading")
        )
        spool._db.execute(f"PRAGMA max_page_count = {pages + 4}")  # 4 pages of room, less the readings'
        wanted = len('{"meter_id":"WM-1","ts":"2026-01-01T00:00:01Z","volume_m3":1.0}') * 2
        left = (4 * page_size - wanted) / 1024
        assert _refused(spool, [reading(1), reading(1)]) == (
            f"spool full: {left:.1f} KiB left for {path}, less than the 32.0 KiB " + tail.format("2 readings")
        )
        spool.reserve_bytes = 16 * 2**20
        assert _refused(spool, [reading(1)]).endswith("less than the 16.0 MiB " + tail.format("1 reading"))
        assert spool.depth() == 0
    finally:
        spool.close()


def test_short_of_room_the_spool_refuses_readings_says_full_and_takes_them_again_once_batches_leave(
    tmp_path: Path,
) -> None:
    """The room kept for delivery: readings that would leave less are refused whole (none stored,
    the depth as it was), ``is_full`` says so (``stop_polling`` skips polls), and acknowledged
    batches give the room back. The disk is SQLite's page limit here (``max_page_count``: 64 pages
    beyond the 32 kept), which the spool counts as it counts a filesystem's free space."""
    spool = Spool(tmp_path / "s.sqlite", reserve_bytes=32 * 4096)
    spool._db.execute(f"PRAGMA max_page_count = {spool._db.execute('PRAGMA page_count').fetchone()[0] + 96}")
    n = 0
    with pytest.raises(SpoolFull, match="spool full"):
        while n < 100_000:
            spool.append([reading(n + i) for i in range(50)])
            n += 50
    assert spool.depth() == n > 0 and spool.is_full()
    batches = spool.seal_many(100, n // 100 + 1)
    spool.acknowledge_many([b.batch_seq for b in batches])
    assert not spool.is_full()
    assert spool.append([reading(n)]).stored == 1
    spool.close()


def test_room_freed_by_other_means_than_deliveries_ends_the_spool_s_fullness(tmp_path: Path) -> None:
    """Short of room with nothing of its own to deliver (the disk filled by something else), the
    spool said full until an acknowledged batch made it look again: under ``stop_polling`` nothing
    is polled, so nothing was ever sealed or acknowledged, and polling never resumed after an
    operator freed the disk. Lowering the reserve stands for the room coming back."""
    spool = Spool(tmp_path / "s.sqlite", reserve_bytes=10**18)
    with pytest.raises(SpoolFull):
        spool.append([reading(1)])
    assert spool.depth() == 0 and spool.is_full()
    spool.reserve_bytes = 0  # the disk cleared
    assert not spool.is_full()
    assert spool.append([reading(1)]).stored == 1
    spool.close()


def test_a_full_disk_is_said_as_such_and_leaves_the_spool_usable(tmp_path: Path) -> None:
    """On SQLITE_FULL SQLite rolls the transaction back itself; the spool's ROLLBACK after it raised
    "cannot rollback - no transaction is active", which hid the full disk. The disk is SQLite's page
    limit here (``max_page_count``), an event far larger than it allows (events take no reserve)."""
    spool = Spool(tmp_path / "s.sqlite")
    spool._db.execute(f"PRAGMA max_page_count = {spool._db.execute('PRAGMA page_count').fetchone()[0] + 16}")
    with pytest.raises(sqlite3.OperationalError, match=r"^database or disk is full$"):
        spool.add_message("t", b"x" * 1_000_000)
    assert not spool._db.in_transaction
    assert spool.add_message("t", b"small") == 0 and spool.messages_waiting() == 1
    spool.close()


def test_the_events_limit_counts_the_events_waiting_not_those_since_delivered(tmp_path: Path) -> None:
    """One event waits (the broker refuses it, say) while later ones are delivered and deleted: the
    limit deleted ``id <= max(id) - limit``, so the waiting one went once ``limit`` more had passed
    through, with only it waiting (and the warning said ``limit`` events waited)."""
    spool = Spool(tmp_path / "s.sqlite")
    spool.add_message("t", b"waiting", limit=3)
    for n in range(10):
        assert spool.add_message("t", b"%d" % n, limit=3) == 0
        ((delivered, _, _),) = spool.messages_after(1, 1)
        spool.delete_messages([delivered])
    assert spool.messages_dropped_total == 0
    assert [payload for _, _, payload in spool.messages_after(0, 10)] == [b"waiting"]
    spool.close()


@settings(max_examples=40, deadline=None)
@given(
    total=st.integers(0, 40),
    size=st.integers(1, 10),
    batches=st.integers(0, 6),
    besides=st.sets(st.integers(0, 10), max_size=6),
    events=st.integers(0, 8),
    events_besides=st.sets(st.integers(0, 10), max_size=6),
)
def test_what_waits_besides_some_batches_or_events_is_counted_unsealed_readings_included(
    tmp_path_factory,
    total: int,
    size: int,
    batches: int,
    besides: set[int],
    events: int,
    events_besides: set[int],
) -> None:
    """What a drain at stop still waits for, besides what cannot go (a reading or an event too large)."""
    spool = Spool(tmp_path_factory.mktemp("spool") / "s.sqlite")
    try:
        spool.append([reading(n) for n in range(total)])
        sealed = spool.seal_many(size, batches)
        for _ in range(events):
            spool.add_message("aquami/v1/gw/events", b"{}")
        waiting = {message_id for message_id, _, _ in spool.messages_after(0, 100)}
        outside = sum(len(b.bodies) for b in sealed if b.batch_seq not in besides)
        assert spool.depth_besides(besides) == outside + total - sum(len(b.bodies) for b in sealed)
        assert spool.depth_besides(()) == spool.depth() == total
        assert spool.messages_besides(events_besides) == len(waiting - events_besides)
        assert spool.messages_besides(()) == spool.messages_waiting() == events
    finally:
        spool.close()
