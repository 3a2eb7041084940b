"""The files ``aquami detect`` reads and writes: readings and meters as CSV, alerts as JSON.

``READINGS.csv`` has the columns ``meter_id,ts,volume_m3`` (any order, named in a header; ``ts`` ISO
8601 in UTC, from 2000-01-01 as the collector takes them, all within ``SPAN_MAX_DAYS``, written as a
stored time is (``aquami.stored_times.shape_problem``), any fraction of a second cut; ``volume_m3``
the cumulative register, m³ from 0 to 10¹² as the reads contract has it; empty, or blanks alone: a
missing read, as a head-end export writes one, left out and counted), one row per reading, rows in
any order; and optionally ``reverse_volume_m3``, the meter's backward register (empty for meters
without one), and ``quality`` (``actual``, ``estimated``, ``substituted``, ``edited``, as the API gives readings; empty
is ``actual``): rows ``estimated`` are left out, as the detection job leaves VEE's estimates out (a
gap of missing reads is the detectors' to spread, and is no evidence of flow).
``METERS.csv`` has ``meter_id,dma,role``, and optionally ``bulk`` (``true`` for a meter that
supplies many premises, a block of flats; ``false`` or empty otherwise) and ``installed_at``,
``removed_at`` (ISO 8601 with a UTC offset, within the years 1900 to 9998 and on one line, as
``register-meters`` stores them: ``aquami.stored_times``; empty: before the readings, still in
place): where a meter was not in place and has no read, it passed no water, which is no missing
read to estimate in its DMA's balance (a meter exchanged for another appears as two rows, the old
one removed when the new one was installed).

One module per job: :mod:`.readings` (READINGS.csv into arrays), :mod:`.fields` and :mod:`.times`
(its columns parsed as whole arrays), :mod:`.meters` (METERS.csv), :mod:`.grid` (the readings laid
on the meters' time grid: the :class:`~collector.detection.series.SeriesBlock` the detectors take),
:mod:`.alerts_json` (ALERTS.json out), :mod:`.errors` (what a malformed file raises).
"""
