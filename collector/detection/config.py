"""Every threshold the detectors use, in one place, with the reason for its default.

The defaults were tuned on simulated fleets (``benchmarks/bench_detection.py``, seeds 11 and 12);
real meters will want them re-checked against labelled cases.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class DetectionConfig:
    # --- register handling ---------------------------------------------------------------------
    #: A fall of the register by at least this much in one step is a reset (meter replaced,
    #: register rolled over), not water flowing backwards.
    reset_drop_m3: float = 1.0
    #: … and so is a fall to below this share of the previous value (a new meter starting near 0).
    reset_ratio: float = 0.1
    #: Register step assumed for a meter whose reads never advance by a single step.
    default_step_m3: float = 0.001

    # --- continuous flow (leak) ----------------------------------------------------------------
    #: Evidence (nats) a run of non-zero intervals needs before it is called a leak. Each interval
    #: with flow adds -ln(1 - p0), p0 being how often this meter is idle at this time of day.
    leak_threshold_nats: float = 15.0
    #: A meter's threshold is also at least this much above the most evidence its ordinary use
    #: reached on any of the previous ``leak_history_days`` days. (4 before: on seeds 11–13, 6
    #: takes false leaks from 22 · 21 · 33 to 17 · 18 · 24 in 280,000 meter-days each, for no
    #: large leak missed and a p90 time to detect of 21 · 19 · 23 h; 7 pushes that p90 to 24 h.)
    leak_margin_nats: float = 6.0
    #: … and at the register's step (any flow at all) this much more again: there every hour of a
    #: busy day counts as flow, while at the higher levels a day's use breaks the run. (0 before:
    #: on seeds 11–15, 3 takes false leaks from 17 · 18 · 24 · 15 · 21 to 12 · 12 · 14 · 10 · 13;
    #: small leaks found within 72 h go from 0.95 · 0.96 · 0.90 · 0.92 · 0.96 to 0.86 · 0.89 ·
    #: 0.86 · 0.92 · 0.88, the large ones are untouched.)
    leak_step_extra_nats: float = 3.0
    #: Flow levels (L/h), besides the register's step, at which evidence is also collected. A leak
    #: gathers evidence by day only at a level it stays above and the household's day often falls
    #: below. (8 and 30 before: a 20–30 L/h leak starting after the night then waited for the
    #: second night; with 16, on seeds 11–15, the p90 time to detect leaks of 10 L/h and more goes
    #: from 20.8 · 19.1 · 23.1 · 21.7 · 25.4 h to 18.2 · 17.1 · 21.4 · 19.7 · 22.3 h, for 0 · 0 ·
    #: 1 · 0 · 1 more false leak. 60 added with the floor rule: on seeds 11 · 16 · 18 the median
    #: time to detect leaks of 10 L/h and more goes from 9.5 · 11.1 · 12.1 h to 8.8 · 10.6 · 10.9 h,
    #: for no more false leaks; 120 besides gains 0.2 h more.)
    leak_levels_l_h: tuple[float, ...] = (8.0, 16.0, 30.0, 60.0)
    #: A run is called a leak only once this many of its intervals sit on one floor: a leak lifts
    #: every interval to its own rate, so the household's idle hours all show that rate, while a
    #: busy day's quietest hours carry whatever little each happened to use (0 or 1: the rule is
    #: off, as it was before; see ``leak.floor_held`` and the README's detection table for what it
    #: changed).
    leak_floor_intervals: int = 3
    #: … within this share of the floor (or one and a half register steps, if more): a leak's rate
    #: wanders with the pressure, by a few per cent between night and day.
    leak_floor_tolerance: float = 0.1
    #: Days of the meter's own history that estimate p0 per time of day.
    leak_history_days: int = 21
    #: Prior for p0 before the meter has history: p0 = ``leak_prior_p0`` worth this many days. Low,
    #: so that a meter without history needs a long unbroken run (about two days) to be called leaking.
    leak_prior_p0: float = 0.25
    leak_prior_days: float = 2.0
    #: … except at times of day when the meter was idle on at least this share of all its recent
    #: days, weekdays and weekends together: there that share is the prior (a weekend, with few days
    #: of its own history, borrows the nights the weekdays show; see ``leak.weight_tables``).
    leak_shared_p0: float = 0.9
    #: Cap on p0 so one interval never weighs more than -ln(1 - cap).
    leak_p0_max: float = 0.95

    # --- customer burst ------------------------------------------------------------------------
    #: A burst is flow held this long (minutes), as the meters' own burst alarm has it (flow above a
    #: limit for 30 minutes). Read every half hour or less often, each interval is judged alone, as
    #: the rules below were tuned on hourly reads; read more often, every rule below judges the
    #: mean flow over the last this-many minutes of reads (two quarter-hours), against the meter's
    #: own such flows, and "the interval before" or "around a time of day" is one such window.
    #: A quarter-hour's shower is a burst's flow; half an hour of it is not. (Read every 15 minutes
    #: and judged by the interval, the benchmark's seeds 11 · 12 raised 2,126 · 2,191 false bursts,
    #: see the README's sub-hourly passage.)
    burst_window_minutes: float = 60.0
    #: "At that time of day" below is within this many minutes of it (or one interval, if longer):
    #: an hour, as tuned on hourly reads, however often the meter is read.
    burst_time_of_day_minutes: float = 60.0
    #: An interval's flow above this multiple of the highest flow in the meter's history…
    #: (2 before: a household's odd hour of twice its usual peak was half the false bursts; at 3,
    #: on seeds 11–13, false bursts fall from 24 · 21 · 21 to 12 · 15 · 14 and every burst the
    #: rules found within one interval is still found, by the time-of-day rules below.)
    burst_factor: float = 3.0
    #: … or two intervals in a row above this multiple of the highest such pair …
    burst_sustained_factor: float = 2.0
    #: … or above this multiple of the highest flow at that time of day (± one interval) on earlier
    #: days (0: off) …
    burst_slot_factor: float = 4.0
    #: … and above this multiple of the highest flow in the meter's history (a night of 250 L/h at a
    #: house that never drew 70 at night, but 300 at dinner time, is its own use, not a burst: on
    #: seeds 11–16, 1 takes false bursts from 6 · 11 · 10 · 6 · 7 · 13 to 5 · 8 · 8 · 5 · 6 · 11, and
    #: one burst on seed 15, 334 L/h at night on a garden meter whose watering hour drew 353, is
    #: raised a read later) …
    burst_slot_highest_factor: float = 1.0
    #: … or, where that is lower, above that highest flow by this many litres per hour and by
    #: ``burst_slot_ratio`` times it (0: off): a shop busy at that hour, whose busiest hour of the day
    #: hides a burst from the first rule and whose afternoons hide it from the third. A shop's single
    #: odd hour looks the same, so this one also needs the interval before (the burst's partial first
    #: one) above the highest flow at its own time of day. (Without that condition, on seeds 11–15,
    #: it found 2 · 0 · 0 · 0 · 0 more bursts within one interval for 6 · 4 · 4 · 3 · 9 more false
    #: alarms in 280,000 meter-days each; with it, the same bursts for 0 · 0 · 0 · 0 · 1. A burst
    #: with only minutes of itself in its first interval waits one more read here.) …
    burst_slot_excess_l_h: float = 300.0
    burst_slot_ratio: float = 2.0
    #: … or above ``burst_closed_factor`` times the highest flow in the meter's history at a time
    #: of the week (± one interval) when it carried nothing at all on each of at least
    #: ``burst_closed_min_weeks`` earlier weeks (a shop's closed Sunday; 0: off) …
    #: (On the benchmark's seeds 11 and 12 these three rules find the 3 of 149 bursts the rules above
    #: missed that more than their one interval gives away, one each: 911 L/h on a closed Sunday,
    #: 10.2 deviations on a garden meter's evening, a shop's hour 4.1 deviations up twice in a row;
    #: the first two for no false alarm, the third for 2 in 560,000 meter-days. ``burst_z`` 9 adds 5
    #: false alarms in seed 12, ``burst_pair_z`` 3.5 adds 5 · 9, and 4.5 loses the shop's burst.)
    burst_closed_factor: float = 1.5
    burst_closed_min_weeks: int = 2
    #: … or ``burst_z`` standard deviations above the mean flow at that time of day (± one interval,
    #: over the previous ``burst_history_days`` days without the days the meter carried nothing) and
    #: above ``burst_z_factor`` times the highest flow in its history (0: off) …
    burst_z: float = 10.0
    burst_z_factor: float = 1.5
    #: … the deviation being at least this (L/h), so that a meter quiet at that hour is not "many
    #: deviations" above it for an ordinary use …
    burst_z_min_sd_l_h: float = 30.0
    #: … or two intervals in a row (a burst's partial first interval and its first whole one) each
    #: ``burst_pair_z`` deviations above their time of day, and the pair above ``burst_pair_z_factor``
    #: times the highest such pair (0: off) …
    burst_pair_z: float = 4.0
    burst_pair_z_factor: float = 1.5
    #: … and above this many litres per hour is a burst. Continuous flow found by the leak detector
    #: at this rate or more is reported as a burst too.
    burst_min_l_h: float = 250.0
    #: History (days) the highest flow is taken from; before this much history exists …
    burst_history_days: int = 14
    burst_min_history_days: float = 2.0
    #: … only a flow above this is called a burst.
    burst_no_history_l_h: float = 2000.0
    #: Until a meter has been read on this many days, it is still being learned: a few days hold
    #: neither its heavy days nor its weekend, and a household back from a holiday, or with its
    #: week's laundry, draws many times its first days' highest hour. In those days a burst is
    #: either above ``burst_no_history_l_h`` (and ``burst_factor`` times the highest so far) or two
    #: intervals in a row above ``burst_sustained_factor`` times the highest single interval so far:
    #: a heavy hour is one interval, a burst runs on. (The benchmark's warm-up week as a go-live,
    #: seeds 11–19: false bursts 148–185 → 0–3 in 10,020 meters, 21–26 → 0–0.43 per 10,000
    #: meter-days; the bursts begun in it found as before, raised 1.5–2.1 h after they began
    #: (median) instead of 0.7–1.1.)
    burst_learning_days: int = 7

    # --- leak behind a bulk meter (collector.detection.bulk) -------------------------------------
    #: The lowest flow over this many days (three nights: one night's odd use, or two, is no leak;
    #: on one sample of the WNTR benchmark's blocks two nights raised 111 false leaks, three 4) …
    bulk_window_days: float = 3.0
    #: … against the daily lowest flows of this many whole days before them, at least this many
    #: known (with 7, 8 false leaks on the blocks, 4 of them on the first days allowed) …
    bulk_history_days: int = 14
    bulk_min_history_days: int = 10
    #: … above their median by this many deviations (MAD, as sigma) …
    bulk_z: float = 4.0
    #: … and above the highest of them by this share of the meter's mean flow, and this many L/h.
    bulk_min_fraction: float = 0.03
    bulk_min_l_h: float = 10.0
    #: A bulk meter idle on at least this share of those days is also held to the household rule
    #: (continuous flow): a small block's quiet hours find leaks its nights cannot (bench_bulk_leaks,
    #: seeds 1 · 2: leaks of 5–10% of the flow found 0.18 · 0.18 → 0.42 · 0.39; on seed 1, 0.5 finds
    #: 0.47 for volumes within 20% 0.72 instead of 0.80).
    bulk_idle_share: float = 0.8

    # --- reverse flow --------------------------------------------------------------------------
    #: Backward movement (litres) within ``reverse_window_h`` that raises an alert, and at least
    #: this many register steps (a single step back can be a register's jitter).
    reverse_min_l: float = 2.0
    reverse_min_steps: int = 2
    reverse_window_h: float = 24.0
    #: On the net register alone, a reverse flow's first or last backward interval that carries
    #: less than its rate, next to an interval of use, is weighed against the meter's own use at
    #: those times of day on this many days before (see ``register._ran_on_under_use``).
    reverse_history_days: int = 14

    # --- stuck register ------------------------------------------------------------------------
    stuck_days: float = 7.0
    #: "A history of use": mean use over this many days before the register stopped …
    stuck_history_days: float = 14.0
    #: … of at least this much per day, seen over at least ``stuck_min_history_days``.
    stuck_min_daily_l: float = 30.0
    stuck_min_history_days: float = 3.0
    #: A still register is raised at ``stuck_days`` only when the DMA balance confirms it (see
    #: :mod:`collector.detection.stuck`): the daily balance over this many days each side of its
    #: stop (at least ``stuck_min_days_each_side`` wholly known on each) must favour "its usual use
    #: went on unrecorded" over "nobody home" by this many nats (log-likelihood ratio) …
    stuck_balance_days: float = 7.0
    stuck_min_days_each_side: int = 2
    stuck_evidence_nats: float = 4.5
    #: … other still registers of the DMA are taken to explain the balance's moves (at most
    #: ``stuck_max_explained``) when they explain a step of this share of their own use,
    #: ``stuck_z`` noise deviations clear; a share above the maximum is no evidence for anyone …
    stuck_min_share: float = 0.5
    stuck_max_share: float = 3.0
    stuck_z: float = 3.0
    stuck_max_explained: int = 4
    #: Another still register whose daily use steps with the candidate's this closely (correlation
    #: over the days fitted) is fitted beside it whether chosen or not: the two cannot be told apart.
    stuck_twin_correlation: float = 0.9
    #: … and the balance's day-to-day noise is taken as at least this (L/h, a daily mean).
    stuck_min_noise_l_h: float = 0.5
    #: Otherwise (no inlet, a balance too noisy or disturbed to tell, an empty house) the register
    #: alone raises it after this many days, longer than most holidays, with a confidence below 0.5.
    stuck_unconfirmed_days: float = 21.0

    # --- district (DMA) ------------------------------------------------------------------------
    #: Days of history whose per-time-of-day quantile is the DMA balance baseline …
    dma_baseline_days: int = 14
    #: … this quantile of them: below the median, since a main burst only ever adds to the balance
    #: and one that ran for half the days would carry the median with it; the baseline's days
    #: after such a burst then sat half a burst high, and the balance's return to its own level
    #: read as a step up. (0.5 before: on seeds 11–15, 0.3 takes false main bursts from
    #: 9 · 8 · 6 · 7 · 9 to 8 · 6 · 3 · 3 · 4, and finds 1 · 2 · 0 · 0 · -1 more; 0.35 and 0.4 do
    #: less for the false ones, 0.25 blurs the rates.)
    dma_baseline_quantile: float = 0.3
    #: Window lengths (intervals of an hour or more; on sub-hourly reads, hours: see
    #: :meth:`with_dma_windows_for`) over which the median excess over baseline is tested. (Counted in
    #: intervals before, so that reads every 15 minutes tested 45 minutes to 6 hours of the
    #: balance's noise: on the benchmark's seeds 11 · 12 read every 15 minutes, 13 · 22 false main
    #: bursts; in hours, 2 · 7, every main burst still found, at a median of 1.7 h.)
    dma_windows: tuple[int, ...] = (3, 6, 12, 24)
    #: z-score a window median must reach against the balance's own noise …
    dma_z: float = 7.0
    #: … and the excess must be at least this share of the inlet's mean flow.
    dma_min_fraction: float = 0.025
    dma_min_history_days: float = 3.0
    #: Intervals to wait for a customer's late read before estimating it instead: the balance at
    #: ``t`` is then known, and alerts raised, at ``t + dma_read_lag`` intervals.
    dma_read_lag: int = 1
    #: A second main burst while one runs is a step up of at least this share of the flow the
    #: running ones carry (besides ``dma_z`` noise deviations and ``dma_min_fraction``): a burst's own
    #: flow wavers with the pressure. (0.5 before: on seeds 11–15, 0.25 finds 0 · 0 · 0 · 1 · 2
    #: more main bursts hidden under larger ones, for no false alarm more.)
    dma_nested_share: float = 0.25
    #: A customer register still this long (days) is estimated in the balance as if unread.
    dma_stalled_days: float = 2.0
    #: Main bursts' rates and volumes are measured again without the estimates of stalled registers
    #: that have moved again since (households back home): see
    #: :mod:`collector.detection.district_revised`.
    dma_revise_back_home: bool = True
    #: A customer register still this long (hours), and not yet stalled, may explain a DMA step as
    #: large as it usually draws at that time (the largest such register of the DMA): see
    #: :func:`collector.detection.balance.still_register_flow`.
    dma_still_hours: float = 3.0

    # --- the meters' own alarms ------------------------------------------------------------------
    #: An alarm that comes back within this many hours of clearing is the same episode, and an
    #: alarm's end is told only once it has stayed clear this long. A flapping bit (a loose tamper
    #: contact, a battery at the edge of its threshold) toggles poll by poll: set every other hourly
    #: poll for a day it opened 12 alerts and 12 enquiries (12 urgent ones for a burst bit). Six
    #: hours hold six hourly polls and 24 fifteen-minute ones, so such flapping is one alert, while a
    #: daily meter's reads, a day apart, stay episodes of their own; the price is that an alarm's
    #: enquiry hears it cleared six hours late. 0: every clear ends the episode at once.
    alarm_hold_off_h: float = 6.0

    # --- engine --------------------------------------------------------------------------------
    #: Meters per chunk: bounds memory (each (M, T) float64 array of a chunk is M × T × 8 bytes).
    #: Small chunks stay in the CPU caches, which matters more than the per-chunk overhead.
    chunk_meters: int = 1_000
    #: Threads working on chunks at once.
    workers: int = 2

    def with_dma_windows_for(self, interval_s: int) -> DetectionConfig:
        """This configuration with ``dma_windows`` in intervals of ``interval_s`` seconds; itself on
        reads an hour or more apart (as tuned: hourly, and longer intervals kept as they were)."""
        if interval_s >= 3600:
            return self
        windows = tuple(round(w * 3600 / interval_s) for w in self.dma_windows)
        return self if windows == self.dma_windows else replace(self, dma_windows=windows)
