"""``aquami collector``: MQTT → database ingest, and schema migrations."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from aquami.cli_params import A_YEAR_S, floor_lag_warning_option, iso_datetime
from aquami.cli_text import checked_identifier, checked_mqtt_url, checked_text
from aquami.database_url import DATABASE_URL, SERVICE_DATABASE_URL
from aquami.exit_codes import FAILED
from aquami.logging_setup import configure_logging

if TYPE_CHECKING:
    from collector.vee.config import VeeConfig

#: Seconds between tries to reach a database that is not there yet.
_RETRY_S = 5.0

#: How far past this machine's clock a stored detection run may be: another host's clock, a little
#: ahead. A run later than that is stored as the latest, and every live run before its instant is
#: then refused (it would rewind the alerts): a mistyped year would be a year without detection.
CLOCK_SKEW = timedelta(minutes=5)


def register(app: typer.Typer) -> None:
    collector_app = typer.Typer(help="Ingest readings from MQTT into the database.", no_args_is_help=True)

    @collector_app.command("migrate")
    def migrate_command(database_url: str = DATABASE_URL) -> None:
        """Apply the schema migrations that are missing (a no-op when up to date)."""
        from collector.migrate import migrate

        typer.echo(json.dumps({"applied": migrate(database_url)}))

    @collector_app.command("run")
    def run(
        database_url: str = SERVICE_DATABASE_URL,
        mqtt_url: str = typer.Option(
            ...,
            envvar="AQUAMI_MQTT_URL",
            callback=checked_mqtt_url("--mqtt-url"),
            help="mqtt://host:port of the broker.",
        ),
        client_id: str = typer.Option(
            None,
            callback=checked_text("--client-id"),
            help="MQTT client id (its persistent session); default aquami-collector, with --shared-group "
            "aquami-collector-HOSTNAME. Each collector needs its own: several of a group on one host each "
            "need one given.",
        ),
        shared_group: str = typer.Option(
            None, callback=checked_text("--shared-group"), help="Share the subscription in this group ($share/GROUP/…)."
        ),
        vee_every: float = typer.Option(
            3600,
            min=0,
            max=A_YEAR_S,
            help="Every so many seconds, run VEE and refresh consumption over the last two days (rounds more "
            "than 23 h apart: the interval and a day), in one collector at a time (0: never).",
        ),
        detect_every: float = typer.Option(
            900,
            min=0,
            max=A_YEAR_S,
            help="Every so many seconds, run leak and burst detection over the newest data (0: never).",
        ),
        floor_lag_warning: float = floor_lag_warning_option("where detection's arrivals begin"),
        batch_wait: float = typer.Option(
            0.1,
            min=0.0,
            max=60.0,
            help="Seconds a small batch (under 1,000 readings) waits for more messages before it is "
            "written: longer, fewer and larger transactions, each message stored and acknowledged later.",
        ),
        ready_file: Path = typer.Option(
            None,
            help="Write this file once the broker has granted the subscriptions (removed while the broker is "
            "away, and at stop): start gateways after it exists, or what they publish before goes to no one.",
        ),
        mqtt_keepalive: int = typer.Option(  # collector.service.MQTT_KEEPALIVE_* (not imported: a slow import)
            30,
            min=1,
            max=65535,
            envvar="AQUAMI_MQTT_KEEPALIVE",
            help="Seconds of silence after which the collector pings the broker; no answer within as long "
            "again and it reconnects: a half-open link to the broker costs up to twice this (1 to 65535).",
        ),
        database_check: float = typer.Option(  # collector.service.DATABASE_CHECK_* (not imported: a slow import)
            10.0,
            min=1.0,
            max=3600.0,
            envvar="AQUAMI_DATABASE_CHECK",
            help="Seconds without a word from the database after which the idle collector asks it for one "
            "(SELECT 1, asked too before the first write after an idle spell); no answer within as long again "
            "and it gives the connection up and tries a new one: a link that dies while no message comes is "
            "found within twice this, one that died just before a message within this (1 to 3600).",
        ),
        vee_config: Path = typer.Option(
            None,
            "--vee-config",
            exists=True,
            dir_okay=False,
            help="JSON file of VEE settings (collector/vee/config.py) the rounds run with, as `collector vee "
            "--config`; a person's correction is judged by the same maximum flow (recorded by each round).",
        ),
        trust_all_gateways: bool = typer.Option(
            False,
            envvar="AQUAMI_TRUST_ALL_GATEWAYS",
            help="Store any gateway's readings of any meter: for a deployment that trusts every gateway. "
            "By default a gateway may report only the meters assigned to it (assign-meters); the others "
            "are dead letters.",
        ),
        assigned_meters_only: bool = typer.Option(
            False,
            envvar="AQUAMI_ASSIGNED_METERS_ONLY",
            help="Store only the readings of meters assigned ahead (assign-meters): one no gateway is assigned "
            "to is not claimed by the first gateway heard, its readings are dead letters (assign-meters "
            "--replay stores them). By default the first gateway heard reporting a meter becomes its gateway.",
        ),
    ) -> None:
        """Subscribe to every gateway's reads and store them until stopped (Ctrl-C).

        A collector started before its database (a host's boot, a compose file's order) waits for
        it, saying why at once and again every 5 minutes, and goes on once it can apply the migrations.
        """
        import logging
        import signal
        import threading

        import psycopg

        from aquami.mqtt import MqttEndpoint
        from aquami.outage import Outage
        from collector.detection_job import DetectionJobConfig, DetectionScheduler
        from collector.migrate import migrate
        from collector.ready_file import ReadyFile, ReadyFileUnusable
        from collector.schedule import PeriodicJob
        from collector.service import Collector, CollectorConfig
        from collector.vee.rounds import VeeScheduler

        try:
            endpoint = MqttEndpoint.parse(mqtt_url)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--mqtt-url") from None
        _one_trust_option(assigned_meters_only, trust_all_gateways)
        vee_settings = _vee_settings(vee_config, "--vee-config")  # refused before the database is waited for
        if ready_file is not None:  # said now, not once subscribed (the folder missing stopped all ingest)
            try:
                ReadyFile(ready_file).check()
            except ReadyFileUnusable as error:  # exit 1, started again: its folder (a volume) may come
                typer.echo(f"error: {error}", err=True)
                raise typer.Exit(FAILED) from None
        configure_logging(logging.INFO)
        log = logging.getLogger("collector")
        stop = threading.Event()
        failures: list[str] = []

        def fatal(reason: str) -> None:
            failures.append(reason)
            stop.set()

        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        # said once with the reason (a database or role that does not exist is said as such), again
        # every few minutes while it lasts, and when the database is there: not every 5 s
        waiting = Outage(log, "database")
        while True:
            try:
                migrate(database_url)
                break
            except (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction) as error:
                # not there yet, or back as a read-only standby (a failover) with migrations to apply
                waiting.failed(error, f"; trying again every {_RETRY_S:g} s")
                if stop.wait(_RETRY_S):
                    return
        waiting.recovered()
        collector = Collector(
            CollectorConfig(
                database_url,
                endpoint,
                client_id=client_id or default_client_id(shared_group),
                shared_group=shared_group,
                max_delay_s=batch_wait,
                ready_file=ready_file,
                check_meter_gateways=not trust_all_gateways,
                assigned_meters_only=assigned_meters_only,
                mqtt_keepalive_s=mqtt_keepalive,
                database_check_s=database_check,
            ),
            on_fatal=fatal,
        )
        collector.start()
        # each in its own thread: an hourly VEE round (minutes, at a large utility) holds up neither
        # ingest nor detection, and no failure in either stops the other or the collector
        schedules: list[PeriodicJob] = []
        if detect_every > 0:
            schedules.append(
                DetectionScheduler(
                    database_url,
                    timedelta(seconds=detect_every),
                    DetectionJobConfig(floor_lag_warning=timedelta(seconds=floor_lag_warning)),
                )
            )
        if vee_every > 0:
            schedules.append(VeeScheduler(database_url, timedelta(seconds=vee_every), vee_settings))
        for schedule in schedules:
            schedule.start()
        while not stop.wait(30.0):
            log.info("counters %s", collector.counters.snapshot())
        for schedule in schedules:
            schedule.stop()
        collector.stop()
        if failures:  # logged as it happened; exit 1, so a supervisor restarts the collector
            raise typer.Exit(FAILED)

    @collector_app.command("leave-group")
    def leave_group_command(
        client_id: str = typer.Option(
            ...,
            callback=checked_text("--client-id"),
            help="The MQTT client id of the collector that leaves (its persistent session on the broker).",
        ),
        shared_group: str = typer.Option(
            ..., callback=checked_text("--shared-group"), help="The group it was in (its --shared-group)."
        ),
        mqtt_url: str = typer.Option(
            ...,
            envvar="AQUAMI_MQTT_URL",
            callback=checked_mqtt_url("--mqtt-url"),
            help="mqtt://host:port of the broker.",
        ),
        database_url: str = DATABASE_URL,
        quiet: float = typer.Option(
            3.0,
            min=0.5,
            max=600.0,
            help="Seconds with no message (and every one stored) after which the session is taken as empty.",
        ),
        trust_all_gateways: bool = typer.Option(
            False,
            envvar="AQUAMI_TRUST_ALL_GATEWAYS",
            help="As collector run's: store any gateway's readings of any meter.",
        ),
        assigned_meters_only: bool = typer.Option(
            False,
            envvar="AQUAMI_ASSIGNED_METERS_ONLY",
            help="As collector run's: store only the readings of meters assigned ahead (assign-meters).",
        ),
    ) -> None:
        """Take a stopped collector out of its shared group for good, its backlog stored (JSON).

        Stop the collector first, for good. Connects under its client id, ends its subscriptions (the
        group's new messages go to the collectors left), stores every message its session still holds
        as the collector would (a repeat is a no-op, a bad one a dead letter), then ends the session.
        A collector still running under the id is knocked off once and knocks this one off: then
        nothing is ended, and it exits 1.
        """
        import logging
        import signal
        import threading

        from aquami.mqtt import MqttEndpoint
        from collector.leave_group import LeaveGroupFailed, leave_group
        from collector.migrate import migrate
        from collector.service import CollectorConfig

        try:
            endpoint = MqttEndpoint.parse(mqtt_url)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--mqtt-url") from None
        _one_trust_option(assigned_meters_only, trust_all_gateways)
        configure_logging(logging.INFO)
        migrate(database_url)
        config = CollectorConfig(
            database_url,
            endpoint,
            client_id=client_id,
            shared_group=shared_group,
            check_meter_gateways=not trust_all_gateways,
            assigned_meters_only=assigned_meters_only,
        )
        stop = threading.Event()  # Ctrl-C: stop storing, leave the session as it is
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            result = leave_group(config, quiet_s=quiet, stop=stop)
        except LeaveGroupFailed as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(FAILED) from None
        from dataclasses import asdict

        typer.echo(json.dumps(asdict(result)))

    @collector_app.command("assign-meters")
    def assign_meters_command(
        meter_ids: list[str] = typer.Argument(
            None, callback=checked_identifier("METER_IDS"), help="The meters (none with --from-gateway)."
        ),
        gateways: list[str] = typer.Option(
            None,
            "--gateway",
            callback=checked_identifier("--gateway"),
            help="A gateway they are assigned to (repeat for several); none: show theirs.",
        ),
        add: bool = typer.Option(False, "--add", help="Keep their other gateways (a second receiver)."),
        from_gateway: str = typer.Option(
            None,
            callback=checked_identifier("--from-gateway"),
            help="Every meter of this gateway (one replaced by --gateway).",
        ),
        replay: bool = typer.Option(
            False, "--replay", help="Then store the readings and events refused for them from these gateways."
        ),
        database_url: str = DATABASE_URL,
    ) -> None:
        """Assign meters to the gateways that may report them, or show theirs (JSON).

        A gateway's readings and events of a meter not assigned to it are dead letters. A meter is
        assigned to the gateway first heard reporting it (by no gateway with collector run
        --assigned-meters-only: its readings are dead letters until assigned here); this moves it
        (its gateways become exactly these; those left still deliver what they measured before the
        move, for 35 days), or with --add assigns another as well (a wM-Bus meter two receivers hear).
        """
        import psycopg

        from aquami.contracts.reads import is_identifier, utc_iso
        from collector import meter_gateways
        from collector.dead_letter_replay import replay as replay_letters

        given = [
            *(("METER_IDS", m) for m in meter_ids or ()),
            *(("--gateway", g) for g in gateways or ()),
            *([("--from-gateway", from_gateway)] if from_gateway is not None else []),
        ]
        for name, value in given:
            if not is_identifier(value):
                raise typer.BadParameter(
                    f"{value!r} is no identifier (letters, digits and . _ : -, at most 64)", param_hint=name
                )
        if bool(meter_ids) == bool(from_gateway):
            raise typer.BadParameter("give meter ids or --from-gateway: one of them", param_hint="METER_IDS")
        if replay and not gateways:
            raise typer.BadParameter(
                "--replay needs --gateway: it stores what the meters are assigned to now", param_hint="--replay"
            )
        with psycopg.connect(database_url) as conn:
            meters = list(meter_ids) if meter_ids else meter_gateways.meters_of(conn, from_gateway)
            if not meters:
                raise typer.BadParameter(f"{from_gateway!r} has no meters", param_hint="--from-gateway")
            if gateways:
                for meter_id in meter_gateways.unknown(conn, meters):
                    typer.echo(
                        f"warning: meter {meter_id} is not registered (register-meters) and no gateway has "
                        "reported it: assigned all the same, as a meter assigned ahead of its fitting; if the id "
                        "is a typo, the meter meant is still not assigned",
                        err=True,
                    )
                found = meter_gateways.assign(conn, meters, gateways, "aquami collector assign-meters", add=add)
                conn.commit()
            else:
                with conn.cursor() as cur:
                    found = meter_gateways.current(cur, meters)
        result: dict[str, Any] = {
            "meters": {m: sorted(g for g, until in found.get(m, {}).items() if until is None) for m in meters},
            # the gateways each meter moved away from, and when: what they measured before is still taken
            "moved_from": {
                m: {g: utc_iso(until) for g, until in sorted(found[m].items()) if until is not None}
                for m in meters
                if any(until is not None for until in found.get(m, {}).values())
            },
        }
        if replay:
            from dataclasses import asdict

            result["replayed"] = asdict(replay_letters(database_url, meters))
        typer.echo(json.dumps(result))

    @collector_app.command("vee")
    def vee_command(
        database_url: str = DATABASE_URL,
        start: datetime = typer.Option(..., "--from", parser=iso_datetime, help="Start (inclusive), ISO 8601 UTC."),
        end: datetime = typer.Option(..., "--to", parser=iso_datetime, help="End (exclusive), ISO 8601 UTC."),
        config: Path = typer.Option(
            None, exists=True, dir_okay=False, help="JSON file of VEE settings (collector/vee/config.py)."
        ),
    ) -> None:
        """Validate and estimate readings in [from, to), then refresh consumption; prints a JSON report
        (exit 1 when batches of meters conflicted with other transactions and were left undone)."""
        start, end = _period(start, end)
        settings = _vee_settings(config)
        done = _vee_and_consumption(database_url, start, end, settings)
        typer.echo(json.dumps(done))
        if done["batches_left"]:  # (the rest is done: its report printed, then the run said incomplete)
            typer.echo(
                f"error: VEE left {done['batches_left']} of its batches undone ({done['meters_left']} meters), "
                "each rolled back for a conflict with another transaction at its 3 runs: run the same command again",
                err=True,
            )
            raise typer.Exit(1)

    @collector_app.command("detect")
    def detect_command(
        database_url: str = DATABASE_URL,
        at: datetime = typer.Option(
            None, "--at", parser=iso_datetime, help="Run as at this instant, ISO 8601 UTC (default: now)."
        ),
        until: datetime = typer.Option(
            None,
            "--until",
            parser=iso_datetime,
            help="Back-run: repeat every --step from --at up to this instant, as if live.",
        ),
        # bounded: a 20-digit --step or --history-days was taken, then overflowed timedelta into a traceback
        # once connected; a --history-days of 0 or less is no history to look at
        step_minutes: int = typer.Option(
            60, "--step", min=1, max=A_YEAR_S // 60, help="Minutes between back-run steps."
        ),
        history_days: int = typer.Option(28, min=1, max=366, help="Days of readings each run looks at."),
        out: Path = typer.Option(
            None,
            "--out",
            dir_okay=False,
            help="Dry run: write the alerts the runs would raise to this ALERTS.json and leave the stored "
            "alerts as they are (the only way to run at an instant before the latest run).",
        ),
    ) -> None:
        """Run detection over stored readings and update the alerts; prints what changed as JSON lines.

        A back-run (``--until``) replays the period run by run, each seeing only readings up to its
        own instant, as the live schedule would have: the way to tune thresholds on past data. Runs
        store their alerts (and raise enquiries) only at or after the latest run: one at an earlier
        instant would rewind live alerts, and is refused. With ``--out``, nothing is stored: each run
        merges into the alerts of the runs before it (none at first), and the last alerts are written
        to the file (as ``aquami detect --out``).
        """
        import psycopg

        from collector.detection.alerts import Alert
        from collector.detection.files.alerts_json import write_alerts_json
        from collector.detection_job import BackRun, DetectionJobConfig, run_detection_once

        if out is not None and not out.resolve().parent.is_dir():
            raise typer.BadParameter(f"{out}: there is no folder {out.parent}", param_hint="--out")
        now = datetime.now(UTC)
        first = _utc(at) if at else now
        last = _utc(until) if until else first
        if last < first:  # equal is one run, at that instant
            raise typer.BadParameter(f"{last.isoformat()} is before --at {first.isoformat()}", param_hint="--until")
        if out is None:  # a dry run stores nothing, so it may look at any instant
            for option, moment in (("--at", first), ("--until", last)):
                if moment > now + CLOCK_SKEW:
                    raise typer.BadParameter(
                        f"{moment.isoformat()} is in the future (now {now.isoformat(timespec='seconds')}): "
                        "stored as the latest run, it would hold off every live run until then; "
                        "a dry run (--out ALERTS.json) may run at any instant",
                        param_hint=option,
                    )
        config = DetectionJobConfig(history_days=history_days)
        dry_run: dict[str, Alert] | None = {} if out is not None else None
        moment = first
        with psycopg.connect(database_url) as conn:
            while moment <= last:
                try:
                    changes = run_detection_once(conn, moment, config, dry_run=dry_run)
                except BackRun as refused:
                    raise typer.BadParameter(str(refused), param_hint="--at") from None
                summary = {
                    "at": moment.isoformat(),
                    "opened": [a.alert_id for a in changes.opened],
                    "updated": len(changes.updated),
                    "resolved": [a.alert_id for a in changes.resolved],
                }
                typer.echo(json.dumps(summary))
                moment += timedelta(minutes=step_minutes)
        if dry_run is not None and out is not None:
            write_alerts_json(sorted(dry_run.values(), key=lambda a: (a.detected_at, a.alert_id)), out)

    @collector_app.command("consumption")
    def consumption_command(
        database_url: str = DATABASE_URL,
        start: datetime = typer.Option(
            ..., "--from", parser=iso_datetime, help="Start, ISO 8601 UTC (whole local days are refreshed)."
        ),
        end: datetime = typer.Option(..., "--to", parser=iso_datetime, help="End (exclusive), ISO 8601 UTC."),
    ) -> None:
        """Recompute hourly, daily and per-DMA consumption for the local days covering [from, to)."""
        import psycopg

        start, end = _period(start, end)
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT refresh_consumption(%s, %s)", (start, end)).fetchone()
        typer.echo(json.dumps({"hourly_rows": row[0] if row else 0}))

    @collector_app.command("timezone")
    def timezone_command(
        zone: str | None = typer.Argument(None, help="IANA time zone to set, e.g. Europe/London; omit to show it."),
        database_url: str = DATABASE_URL,
    ) -> None:
        """Show or set the utility's time zone: it decides local hours, billing days and months.

        Setting it recomputes every stored hour and day of consumption in the new zone (refused if its reads are gone).
        """
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        import psycopg

        from collector.utility_zone import utility_zone_name

        if zone is not None:  # said before connecting, whatever the database; billing reads it with zoneinfo
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file's
                raise typer.BadParameter(
                    f"unknown time zone {zone[:80]!r}: use an IANA name such as Europe/London", param_hint="ZONE"
                ) from None
        with psycopg.connect(database_url) as conn:
            if zone is None:
                typer.echo(json.dumps({"timezone": utility_zone_name(conn)}))
                return
            try:
                row = conn.execute("SELECT set_utility_timezone(%s)", (zone,)).fetchone()
            except psycopg.errors.InvalidParameterValue as error:
                raise typer.BadParameter(str(error.diag.message_primary), param_hint="ZONE") from None
            except psycopg.errors.ObjectNotInPrerequisiteState as error:  # consumption it cannot recompute (0078)
                typer.echo(f"error: {error.diag.message_primary}; {error.diag.message_hint}", err=True)
                raise typer.Exit(1) from None
        typer.echo(json.dumps({"timezone": zone, "hourly_rows": row[0] if row else 0}))

    app.add_typer(collector_app, name="collector")


def default_client_id(shared_group: str | None) -> str:
    """The collector's MQTT client id when none is given: one per host in a shared group.

    The collectors of a group, all on the one default id, knocked each other off the broker (it
    hands a client id's session to the newest connection: 19 connections in 20 s). Not random: the
    id names the persistent session where the broker keeps the QoS 1 messages that arrive while the
    collector restarts, and a new id at each start would leave them behind in the old one.
    """
    return f"aquami-collector-{socket.gethostname()}" if shared_group else "aquami-collector"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _period(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """[--from, --to) in UTC; an empty or reversed one is refused (it did nothing and said so with
    exit 0, as if it had been done), as ``aquami bill`` and the API refuse it."""
    start, end = _utc(start), _utc(end)
    if end <= start:
        raise typer.BadParameter(f"{end.isoformat()} is not after --from {start.isoformat()}", param_hint="--to")
    return start, end


def _one_trust_option(assigned_meters_only: bool, trust_all_gateways: bool) -> None:
    """``collector run``'s and ``leave-group``'s refusal of both trust options at once: one stores
    only meters assigned ahead, the other every gateway's readings of every meter."""
    if assigned_meters_only and trust_all_gateways:
        raise typer.BadParameter(
            "--trust-all-gateways stores every meter's readings: give one of the two",
            param_hint="--assigned-meters-only",
        )


def _vee_settings(config: Path | None, option: str = "--config") -> VeeConfig:
    """The settings of ``--config``, or the defaults; a file that is not a JSON object of known
    settings with numbers is refused with what is wrong, before the database is touched."""
    from collector.vee.config import VeeConfig

    if config is None:
        return VeeConfig()
    try:
        values = json.loads(config.read_text(encoding="utf-8"))
        if not isinstance(values, dict):
            raise ValueError(f"a JSON object of settings, not {type(values).__name__}")
        return VeeConfig.from_mapping(values)
    except ValueError as error:  # bad JSON, not UTF-8, an unknown setting, not a number
        raise typer.BadParameter(f"{config}: {error}", param_hint=option) from None


def _vee_and_consumption(database_url: str, start: datetime, end: datetime, settings: VeeConfig) -> dict[str, Any]:
    import psycopg

    from collector.vee.rounds import round_lock, vee_and_consumption
    from collector.vee.runner import LEFT_FOR_A_RUN_AGAIN

    def say_waiting() -> None:
        typer.echo("waiting for the VEE round under way (a collector's, or another run's) to finish", err=True)

    # The rounds' lock, waited for: run beside a collector's round over the same days, the two wrote
    # the same flags and one failed (UniqueViolation on vee_flags_pkey, 3 times in 3). While this run
    # holds it, rounds are skipped, as for another collector's round.
    with psycopg.connect(database_url, autocommit=True) as conn, round_lock(conn, wait=say_waiting):
        conn.autocommit = False
        done = vee_and_consumption(conn, start, end, settings, left_for=LEFT_FOR_A_RUN_AGAIN)
        conn.commit()
    return done
