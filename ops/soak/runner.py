"""Run a soak: the load and the nemesis together, a healed quiet period, the settling, the read-backs, the certificate.

    scripts/drill.sh soak --minutes 60 --rate 5 --seed 42 [--skip postgres-crash] [--out DIR]
    scripts/drill.sh soak --seed 42 --minutes 60 --schedule     print the schedule the seed draws, run nothing
    scripts/drill.sh soak --check DIR                          judge a run's history and read-backs again

Timeline: the load runs `--minutes`; faults start from `WARMUP_SECONDS` until
the quiet period (`--quiet-seconds`, the load's last part), each healed
before it begins; then the run waits (bounded by `--settle-within` after the
last fault healed, the certificate's stated bound) until no order is PENDING
or PROCESSING and no outbox row is PENDING, reads everything back, and
writes into the run's directory (`.run/soak-TIME-seedS/` by default):
`history.jsonl`, `readback.json`, `certificate.json`, `report.txt` and
`timeline.png`. Exit status 0 for a clean certificate, 1 otherwise, 2 when
the soak could not run. Ctrl-C or SIGTERM undo every fault in hand.
"""
import argparse
import logging
import os
import secrets
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests
from django.conf import settings
from django.db import connections

from bench.e2e import Platform
from bench.load import catalog_products, loopback_only
from messaging.contract.events import ORDERS_CREATED
from messaging.kafka.monitoring import consumer_group_positions
from ops.drills import faults
from ops.drills.report import database_retrying, stock_snapshot, unsettled_counts
from ops.drills.runner import ROOT, Progress, platform_site, settle_timeout_default
from ops.drills.scenarios import Context
from ops.soak.certificate import Certificate, certificate_build
from ops.soak.history import History, RunEnd, RunRecord, Sample, history_load
from ops.soak.nemesis import (
    DEFAULT_GAP_SECONDS,
    FAULT_KINDS,
    Nemesis,
    ScheduledFault,
    kinds_available,
    schedule_draw,
    schedule_overlapping,
)
from ops.soak.readback import ReadBack, readback_take
from ops.soak.timeline import timeline_draw
from ops.soak.workload import CUSTOMER_DOMAIN, ManagerSession, Workload, WorkloadMix
from outbox.models import OutboxEvent, OutboxStatus

WARMUP_SECONDS = 10.0
SAMPLE_SECONDS = 5.0
# Stock each product is topped up to beyond what the load can take (retries and replays take none twice).
STOCK_MARGIN = 200


@dataclass
class SoakOptions:
    minutes: float
    rate: float
    seed: int
    base_url: str
    out: Path
    kinds: list[str]
    quiet_seconds: float
    settle_within_seconds: float
    gap: tuple[float, float] = DEFAULT_GAP_SECONDS
    max_hold_seconds: float | None = None
    manager: tuple[str, str] = ("manager", "manager123")
    request_timeout: float = 10.0
    mix: WorkloadMix = field(default_factory=WorkloadMix)
    command: str = ""

    @property
    def load_seconds(self) -> float:
        return self.minutes * 60

    @property
    def window(self) -> tuple[float, float]:
        return (min(WARMUP_SECONDS, self.load_seconds / 10), self.load_seconds - self.quiet_seconds)


def soak_schedule(options: SoakOptions, site: faults.Site) -> tuple[list[ScheduledFault], dict[str, str]]:
    """The schedule the seed draws for the kinds this platform can take, and the kinds left out (with why)."""
    kinds, excluded = kinds_available(site, options.kinds)
    schedule = schedule_draw(seed=options.seed, kinds=kinds, window=options.window, gap=options.gap, max_hold_seconds=options.max_hold_seconds)
    return schedule, excluded


class SoakProgress(Progress):
    """The drills' progress line, showing the customers' outcomes, the faults in hand and the backlog."""

    def __init__(self, options: SoakOptions) -> None:
        super().__init__(f"soak seed {options.seed}", rate=options.rate)
        self.total_seconds = options.load_seconds
        self.workload: Workload | None = None
        self.nemesis: Nemesis | None = None
        self.sample: Sample | None = None

    def line(self) -> str:
        elapsed = int(time.time() - self.started)
        total = int(self.total_seconds)
        text = f"[{self.scenario}] {elapsed // 60:02d}:{elapsed % 60:02d}/{total // 60:02d}:{total % 60:02d} {self.phase:<8}"
        if self.workload is not None:
            tally = self.workload.tally
            text += f" customers {tally.offered} ack {tally.acknowledged} refused {tally.refused} no-answer {tally.timed_out}"
        if self.nemesis is not None:
            active = ", ".join(self.nemesis.active_names()) or "none"
            text += f" | faults {self.nemesis.done}/{len(self.nemesis.schedule)} done, in hand: {active}"
        if self.sample is not None:
            text += f" | outbox {self.sample.outbox_pending} lag {self.sample.consumer_lag}"
        return f"{text} {self.detail}".rstrip()


def _sample(bootstrap_servers: list[str]) -> Sample:
    """Outbox backlog and consumer lag now; None for a source that does not answer (it may be the fault)."""
    try:
        pending = OutboxEvent.objects.filter(status=OutboxStatus.PENDING).count()
    except Exception:  # noqa: BLE001 - the database may be the fault in hand
        connections.close_all()
        pending = None
    try:
        positions = consumer_group_positions(
            bootstrap_servers=bootstrap_servers, group_id=settings.ORDERS_CONSUMER_GROUP, topic=ORDERS_CREATED, timeout_seconds=2.0
        )
        lag = sum(position.lag for position in positions.values())
    except Exception:  # noqa: BLE001 - the broker may be the fault in hand
        lag = None
    return Sample(at=time.time(), outbox_pending=pending, consumer_lag=lag)


def _sampler(history: History, progress: SoakProgress, bootstrap_servers: list[str], stop: threading.Event) -> None:
    while not stop.wait(SAMPLE_SECONDS):
        sample = _sample(bootstrap_servers)
        progress.sample = sample
        history.record(sample)
    connections.close_all()


def _settle(progress: SoakProgress, *, since: float, deadline: float) -> float | None:
    """Wait until no order is unsettled and no outbox row PENDING, or the deadline; return when it was so."""
    progress.phase = "settle"
    moment = datetime.fromtimestamp(since, tz=UTC)
    while True:
        orders, outbox = database_retrying(lambda: unsettled_counts(since=moment))
        progress.detail = f"(unsettled orders {orders}, outbox pending {outbox})"
        if orders == 0 and outbox == 0:
            return time.time()
        if time.time() > deadline:
            return None
        time.sleep(2)


def soak_run(
    options: SoakOptions, *, site: faults.Site, supervisor_socket: Path, schedule: list[ScheduledFault], excluded: dict[str, str]
) -> Certificate:
    """Run the soak (`schedule`, drawn by soak_schedule) against the platform; write its files into `options.out`; return the certificate."""
    options.out.mkdir(parents=True, exist_ok=True)
    platform = Platform(options.base_url, username=options.manager[0], password=options.manager[1], metrics_token=None, timeout_seconds=10)
    products = catalog_products(options.base_url)
    platform.restock(products, at_least=int(options.rate * options.load_seconds / len(products)) + STOCK_MARGIN)
    product_ids = [product["id"] for product in products]
    stock_before = {str(key): value for key, value in database_retrying(lambda: stock_snapshot(product_ids)).items()}
    history = History(options.out / "history.jsonl")
    started_at = time.time()
    key_prefix = f"soak-{secrets.token_hex(3)}"
    run = RunRecord(
        seed=options.seed, rate=options.rate, minutes=options.minutes, started_at=started_at, load_seconds=options.load_seconds,
        quiet_seconds=options.quiet_seconds, settle_within_seconds=options.settle_within_seconds, key_prefix=key_prefix,
        customer_domain=CUSTOMER_DOMAIN, fault_kinds=options.kinds, excluded_kinds=excluded,
        schedule=[{"at": entry.at, "kind": entry.kind, "seconds": entry.seconds} for entry in schedule], stock_before=stock_before,
        command=options.command,
    )  # fmt: skip
    history.record(run)
    workload = Workload(
        base_url=options.base_url, products=products, rate=options.rate, duration_seconds=options.load_seconds, seed=options.seed,
        key_prefix=key_prefix, history=history, mix=options.mix, timeout_seconds=options.request_timeout,
        manager=ManagerSession(options.base_url, username=options.manager[0], password=options.manager[1], timeout_seconds=10),
    )  # fmt: skip
    nemesis = Nemesis(
        schedule=schedule, history=history, origin=started_at,
        context=lambda: Context(site=site, supervisor=faults.Supervisor(supervisor_socket)),
    )  # fmt: skip
    stop = threading.Event()
    interrupted = False
    settled_at = None
    with SoakProgress(options) as progress:
        progress.workload, progress.nemesis = workload, nemesis
        sampler = threading.Thread(target=_sampler, args=(history, progress, site.bootstrap_servers, stop), daemon=True)
        loader = threading.Thread(target=workload.run, args=(stop,), name="soak-load", daemon=True)
        try:
            progress.phase = "load"
            progress.load_started = time.time()
            sampler.start()
            nemesis.start()
            loader.start()
            while loader.is_alive():
                loader.join(0.5)
            progress.phase = "heal"
            nemesis.join(timeout_seconds=300)
            last_healed = nemesis.last_healed_at or started_at
            settled_at = _settle(progress, since=started_at, deadline=last_healed + options.settle_within_seconds)
        except KeyboardInterrupt:
            interrupted = True
            progress.phase = "undo"
            progress.detail = "(interrupted: undoing the faults in hand)"
            stop.set()
            nemesis.stop()
            nemesis.join(timeout_seconds=120)
        finally:
            stop.set()
            nemesis.stop()
            sampler.join(timeout=10)
        end = RunEnd(load_ended_at=time.time(), last_healed_at=nemesis.last_healed_at, settled_at=settled_at, interrupted=interrupted)
        history.record(end)
        history.close()
        progress.phase = "readback"
        progress.detail = ""
        readback = readback_take(since=started_at, product_ids=product_ids, bootstrap_servers=site.bootstrap_servers)
        readback.write(options.out / "readback.json")
        progress.phase = "check"
    return soak_judge(options.out)


def soak_judge(out: Path) -> Certificate:
    """Judge a run directory from its history and read-backs alone; write the certificate, the report and the timeline."""
    history = history_load(out / "history.jsonl")
    certificate = certificate_build(history, ReadBack.load(out / "readback.json"))
    certificate.write(out)
    timeline_draw(history, out / "timeline.png")
    return certificate


# --- the command line ---------------------------------------------------------------------------------


def _pair(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    return float(low), float(high or low)


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in FAULT_KINDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}")
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/drill.sh soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load, quiet period included (default 10)")
    parser.add_argument("--rate", type=float, default=3.0, help="customers a second (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="draws the schedule and the customers' choices (default 1)")
    parser.add_argument("--faults", type=_names, default=None, help="the fault kinds in play (default: all of them)")
    parser.add_argument("--skip", type=_names, default=[], help="kinds to leave out, comma-separated")
    parser.add_argument("--gap", type=_pair, default=DEFAULT_GAP_SECONDS, help="seconds between two faults' starts, MIN,MAX (default 10,60)")
    parser.add_argument("--max-hold", type=float, default=None, help="cap on how long any fault is held (seconds)")
    parser.add_argument("--quiet-seconds", type=float, default=None, help="the load's fault-free end (default: a tenth, 30 s to 3 min)")
    parser.add_argument("--settle-within", type=float, default=None, help="the stated bound: every order settled this long after the last fault healed")
    parser.add_argument("--base-url", default=None, help="the platform (default http://127.0.0.1:$WEB_PORT)")
    parser.add_argument("--manager", default="manager:manager123", help="USER:PASSWORD of a manager (cancels, restocking)")
    parser.add_argument("--request-timeout", type=float, default=10.0, help="time limit of each customer request")
    parser.add_argument("--out", type=Path, default=None, help="the run's directory (default .run/soak-TIME-seedS)")
    parser.add_argument("--schedule", action="store_true", help="print the schedule the seed draws on this platform, and stop")
    parser.add_argument("--check", type=Path, default=None, help="judge an earlier run's directory again, and stop")
    return parser


def _options(arguments: argparse.Namespace) -> SoakOptions:
    kinds = [name for name in arguments.faults or FAULT_KINDS if name not in arguments.skip]
    load_seconds = arguments.minutes * 60
    quiet = arguments.quiet_seconds if arguments.quiet_seconds is not None else min(max(load_seconds / 10, 30.0), 180.0)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    username, _, password = arguments.manager.partition(":")
    return SoakOptions(
        minutes=arguments.minutes, rate=arguments.rate, seed=arguments.seed,
        base_url=arguments.base_url or f"http://127.0.0.1:{os.environ.get('WEB_PORT', '8000')}",
        out=arguments.out or ROOT / ".run" / f"soak-{stamp}-seed{arguments.seed}", kinds=kinds, quiet_seconds=quiet,
        settle_within_seconds=arguments.settle_within or settle_timeout_default(), gap=arguments.gap,
        max_hold_seconds=arguments.max_hold, manager=(username, password), request_timeout=arguments.request_timeout,
        command="scripts/drill.sh soak " + " ".join(shlex.quote(argument) for argument in sys.argv[2:]),
    )  # fmt: skip


def main(argv: list[str]) -> None:
    arguments = _parser().parse_args(argv)
    if arguments.check is not None:
        certificate = soak_judge(arguments.check)
        print(certificate.render())
        sys.exit(0 if certificate.clean else 1)
    options = _options(arguments)
    site = platform_site()
    schedule, excluded = soak_schedule(options, site)
    if arguments.schedule:
        for entry in schedule:
            print(f"+{entry.at:7.1f}s  {entry.kind:<22} held {entry.seconds:5.1f}s")
        print(f"{len(schedule)} faults, {schedule_overlapping(schedule)} overlapping another")
        for name, reason in excluded.items():
            print(f"left out: {name}: {reason}")
        return
    loopback_only(options.base_url)
    # kafka-python logs an ERROR whenever a read-back or a lag sample meets the broker a fault took away: expected here.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM unwinds like Ctrl-C: every fault is undone
    try:
        requests.get(f"{options.base_url}/health/live", timeout=10).raise_for_status()
    except requests.RequestException as error:
        raise SystemExit(f"soak: the platform at {options.base_url} does not answer ({error}); start it with `bash scripts/run.sh`") from error
    print(f"soak: seed {options.seed}, {len(schedule)} faults ({schedule_overlapping(schedule)} overlapping), files in {options.out}", flush=True)
    for name, reason in excluded.items():
        print(f"soak: left out {name}: {reason}", flush=True)
    certificate = soak_run(options, site=site, supervisor_socket=site.run_dir / "supervisor.sock", schedule=schedule, excluded=excluded)
    print(certificate.render(), flush=True)
    print(f"soak: certificate {options.out / 'certificate.json'}, timeline {options.out / 'timeline.png'}")
    sys.exit(130 if certificate.interrupted else 0 if certificate.clean else 1)
