"""Run a drill: a bounded checkout load, the fault in the middle of it, quiescence, the report.

    scripts/drill.sh SCENARIO|all [--rate 5] [--duration S] [--fault-at 10] [--fault-seconds S]
                     [--settle-timeout S] [--alert-timeout S] [--skip a,b] [--json PATH]
    scripts/drill.sh list      the scenarios
    scripts/drill.sh reset     undo whatever a drill that was SIGKILLed left behind

Timeline: the load starts; `--fault-at` seconds in, the fault is injected and
held `--fault-seconds` (the scenario's default otherwise), then undone
whatever happens; the load runs on (`--duration`, by default until 20 s after
the fault, plus the open time of a breaker the fault opens), then the drill
waits, bounded, for quiescence (no order of the drill PENDING or PROCESSING,
no outbox row PENDING), for the alerts the scenario must fire, and builds the report. Exit status 1 when any invariant
is violated, 2 when the drill could not run.
"""
import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, fields
from datetime import datetime, timezone
from pathlib import Path

import requests
from django.conf import settings

from bench.e2e import Platform
from bench.load import CheckoutResult, catalog_products, checkout_load, loopback_only
from ops.drills import faults
from ops.drills.report import (
    DrillReport,
    Prometheus,
    counter_total,
    database_retrying,
    report_build,
    stock_snapshot,
    unsettled_counts,
)
from ops.drills.scenarios import SCENARIOS, Context, Scenario
from resilience.policies import policy

ROOT = Path(__file__).resolve().parents[2]
# The load keeps running this long after the fault is undone (and after an
# opened breaker's open time, see Scenario.opens_breaker), so recovery shows in new orders.
AFTER_FAULT_SECONDS = 20.0
# OrderCreated deliveries the consumer found already applied: copies, absorbed.
DUPLICATES_COUNTER = "orders_consumer_duplicates"


class Progress:
    """One line, rewritten every second on a terminal (a line every 10 s otherwise): elapsed, phase, requests."""

    def __init__(self, scenario: str, *, rate: float, stream=sys.stderr) -> None:
        self.scenario, self.rate, self.stream = scenario, rate, stream
        self.started = time.time()
        self.phase = "setup"
        self.detail = ""
        self.load_started: float | None = None
        self.load_total = 0
        self.ok = 0
        self.errors = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._tty = stream.isatty()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def result(self, result: CheckoutResult) -> None:
        with self._lock:
            if result.status == 201:
                self.ok += 1
            else:
                self.errors += 1

    def line(self) -> str:
        elapsed = int(time.time() - self.started)
        sent = 0
        if self.load_started is not None:
            sent = min(self.load_total, max(int((time.time() - self.load_started) * self.rate), self.ok + self.errors))
        text = f"[drill {self.scenario}] {elapsed // 60:02d}:{elapsed % 60:02d} {self.phase:<8} sent {sent} ok {self.ok} errors {self.errors}"
        return f"{text} {self.detail}".rstrip()

    def _run(self) -> None:
        last = 0.0
        while not self._stop.wait(1.0):
            if self._tty:
                self.stream.write("\r\033[K" + self.line())
                self.stream.flush()
            elif time.time() - last >= 10:
                last = time.time()
                print(self.line(), file=self.stream, flush=True)

    def __enter__(self) -> "Progress":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self._tty:
            self.stream.write("\r\033[K")
        print(self.line(), file=self.stream, flush=True)


def _sleep_until(moment: float) -> None:
    while (left := moment - time.time()) > 0:
        time.sleep(min(left, 0.5))


def _settle(report: DrillReport, progress: Progress, *, since: datetime, timeout_seconds: float) -> None:
    """Wait until no order of the drill is PENDING/PROCESSING and the outbox is drained (bounded)."""
    progress.phase = "settle"
    deadline = time.time() + timeout_seconds
    while True:
        orders, outbox = database_retrying(lambda: unsettled_counts(since=since))
        progress.detail = f"(unsettled orders {orders}, outbox pending {outbox})"
        if orders == 0 and outbox == 0:
            report.settled_at = time.time()
            return
        if time.time() > deadline:
            report.notes.append(f"not quiescent after {timeout_seconds:.0f} s: {orders} orders unsettled, {outbox} outbox rows pending")
            return
        time.sleep(1)


def _alerts(report: DrillReport, scenario: Scenario, prometheus: Prometheus, progress: Progress, *, fault_seconds: float, timeout_seconds: float) -> None:
    """Wait (bounded) for the alerts the scenario must fire and resolve; record every alert of the drill."""
    if not prometheus.reachable():
        report.notes.append(f"Prometheus at {prometheus.url} is not reachable: alerts unknown")
        if scenario.required_alerts or scenario.held_alerts:
            report.violations.append("the alerts this drill must fire could not be read from Prometheus")
        return
    required = list(scenario.required_alerts)
    if fault_seconds >= scenario.held_need_seconds:
        required += scenario.held_alerts
    elif scenario.held_alerts:
        report.notes.append(
            f"fault held {fault_seconds:.0f} s (< {scenario.held_need_seconds:.0f} s): "
            f"{', '.join('/'.join(group) for group in scenario.held_alerts)} not required"
        )
    progress.phase = "alerts"
    origin = report.fault_started_at or report.started_at
    fire_deadline = max(time.time(), origin + timeout_seconds)
    resolve_deadline = max(time.time(), (report.fault_undone_at or origin) + timeout_seconds)
    while True:
        seen = prometheus.alerts_seen(start=report.started_at, end=time.time())
        fired = {alert.name for alert in seen if alert.fired_at is not None}
        missing = [group for group in required if not fired & set(group)]
        unresolved = [a.name for a in seen if a.name in scenario.resolve_alerts and a.fired_at is not None and a.firing_now]
        progress.detail = f"(waiting for {', '.join('/'.join(g) for g in missing) or 'resolution of ' + ', '.join(unresolved)})"
        if not missing and not unresolved:
            break
        if (missing and time.time() > fire_deadline) or (not missing and time.time() > resolve_deadline):
            break
        time.sleep(5)
    report.alerts = seen
    for group in required:
        fresh = [a for a in seen if a.name in group and a.fired_at is not None and not a.firing_at_start]
        if not fresh and not [g for g in missing if g == group]:
            report.notes.append(f"{'/'.join(group)} was already firing before the drill: run it again after it resolves for proof")
    for group in missing:
        report.violations.append(f"expected alert {' or '.join(group)} did not fire")
    for name in sorted(set(unresolved)):
        report.violations.append(f"alert {name} did not resolve within {timeout_seconds:.0f} s of the fault being undone")


def drill_run(scenario: Scenario, *, context: Context, platform: Platform, prometheus: Prometheus, options: argparse.Namespace) -> DrillReport:
    """Run one scenario end to end and return its report."""
    fault_seconds = options.fault_seconds if options.fault_seconds is not None else scenario.fault_seconds
    after_seconds = AFTER_FAULT_SECONDS + (policy(scenario.opens_breaker).breaker.open_seconds if scenario.opens_breaker else 0.0)
    duration = options.duration or options.fault_at + max(fault_seconds, scenario.action_seconds) + after_seconds
    products = catalog_products(options.base_url)
    platform.restock(products, at_least=int(options.rate * duration) + 100)
    stock_before = database_retrying(lambda: stock_snapshot([product["id"] for product in products]))
    duplicates_before = counter_total(options.base_url, DUPLICATES_COUNTER)
    since = datetime.now(timezone.utc)
    report = DrillReport(scenario=scenario.name, started_at=since.timestamp())
    results: list[CheckoutResult] = []
    with Progress(scenario.name, rate=options.rate) as progress:
        progress.load_total = max(int(options.rate * duration), 1)

        def load() -> None:
            progress.load_started = time.time()
            results.extend(
                checkout_load(
                    base_url=options.base_url, rate=options.rate, duration_seconds=duration, products=products,
                    on_result=progress.result, timeout_seconds=options.request_timeout,
                )  # fmt: skip
            )

        # A daemon: an interrupted drill undoes its fault and exits without waiting for the load.
        loader = threading.Thread(target=load, name="drill-load", daemon=True)
        progress.phase = "load"
        loader.start()
        _sleep_until(report.started_at + options.fault_at)
        progress.phase = "fault"
        progress.detail = f"({scenario.name}, {fault_seconds:.0f} s)" if fault_seconds else f"({scenario.name})"
        report.fault_started_at = time.time()
        try:
            with scenario.fault(context, fault_seconds):
                _sleep_until(report.fault_started_at + fault_seconds)
        except Exception as error:  # noqa: BLE001 - whatever broke, the fault is undone and the report still follows
            report.violations.append(f"the fault could not be injected or undone: {error!r}")
        finally:
            report.fault_undone_at = time.time()
        progress.phase = "load"
        progress.detail = "(fault undone)"
        loader.join()
        _settle(report, progress, since=since, timeout_seconds=options.settle_timeout)
        if scenario.check is not None:
            progress.phase = "check"
            scenario.check(context, report)
        _alerts(report, scenario, prometheus, progress, fault_seconds=fault_seconds, timeout_seconds=options.alert_timeout)
        progress.phase = "report"
        progress.detail = ""
        duplicates_after = counter_total(options.base_url, DUPLICATES_COUNTER)
        if duplicates_before is not None and duplicates_after is not None:
            report.redeliveries_absorbed = max(duplicates_after - duplicates_before, 0.0)
        report_build(report, results=results, stock_before=stock_before, bootstrap_servers=context.site.bootstrap_servers, since=since)
    return report


def platform_site() -> faults.Site:
    """Where the platform of the run command is: its run directory, broker, Redis and database (from its settings)."""
    return faults.Site(
        root=ROOT,
        run_dir=ROOT / ".run",
        kafka_port=int(settings.KAFKA_BOOTSTRAP_SERVERS[0].rpartition(":")[2]),
        bootstrap_servers=list(settings.KAFKA_BOOTSTRAP_SERVERS),
        redis_url=settings.REDIS_URL,
        database_url=_database_url(),
    )


def _database_url() -> str:
    database = settings.DATABASES["default"]
    return f"postgres://{database.get('USER', '')}@{database.get('HOST') or '127.0.0.1'}:{database.get('PORT') or 5432}/{database['NAME']}"


def settle_timeout_default() -> float:
    # Long enough for reconciliation to re-drive an order the broker lost: the
    # platform's own threshold plus two of its runs (never shortened here).
    return max(180.0, settings.ORDER_RECONCILE_AFTER_SECONDS + 2 * settings.ORDER_RECONCILE_INTERVAL_SECONDS + 60.0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/drill.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=[*SCENARIOS, "all", "list", "reset"])
    parser.add_argument("--base-url", default=None, help="the platform (default http://127.0.0.1:$WEB_PORT)")
    parser.add_argument("--prometheus-url", default=None, help="default http://127.0.0.1:$PROMETHEUS_PORT")
    parser.add_argument("--rate", type=float, default=5.0, help="checkouts a second (default 5)")
    parser.add_argument("--duration", type=float, default=None, help="seconds of load (default: until about 20 s after the fault and any breaker it opened)")
    parser.add_argument("--fault-at", type=float, default=10.0, help="seconds into the load the fault starts (default 10)")
    parser.add_argument("--fault-seconds", type=float, default=None, help="how long the fault is held (default: the scenario's)")
    parser.add_argument("--settle-timeout", type=float, default=None, help="bound of the wait for quiescence")
    parser.add_argument("--alert-timeout", type=float, default=300.0, help="bound of the waits for required alerts to fire and resolve")
    parser.add_argument("--request-timeout", type=float, default=10.0, help="time limit of each request of the load")
    parser.add_argument("--skip", default="", help="with `all`: scenarios to leave out, comma-separated")
    parser.add_argument("--json", type=Path, default=None, help="also write the reports as JSON here")
    return parser


def main(argv: list[str] | None = None) -> None:
    options = _parser().parse_args(argv)
    options.base_url = options.base_url or f"http://127.0.0.1:{os.environ.get('WEB_PORT', '8000')}"
    options.prometheus_url = options.prometheus_url or f"http://127.0.0.1:{os.environ.get('PROMETHEUS_PORT', '9090')}"
    options.settle_timeout = options.settle_timeout or settle_timeout_default()
    if options.scenario == "list":
        for scenario in SCENARIOS.values():
            print(f"{scenario.name:<17} {scenario.summary}" + (f" ({scenario.fault_seconds:.0f} s)" if scenario.fault_seconds else ""))
        return
    loopback_only(options.base_url)
    # kafka-python logs an ERROR when the report's topic reader closes mid-refresh; nothing to act on.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    # SIGTERM unwinds like Ctrl-C, so every fault's undo runs.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    site = platform_site()
    try:
        supervisor = faults.Supervisor(site.run_dir / "supervisor.sock")
    except faults.DrillError as error:
        if options.scenario != "reset":
            raise SystemExit(f"drill: {error}") from error
        supervisor = None
    if options.scenario == "reset":
        for line in faults.faults_reset(site, supervisor):
            print(line)
        return
    try:
        requests.get(f"{options.base_url}/health/live", timeout=10).raise_for_status()
    except requests.RequestException as error:
        raise SystemExit(f"drill: the platform at {options.base_url} does not answer ({error}); start it with `bash scripts/run.sh`") from error
    skip = {name.strip() for name in options.skip.split(",") if name.strip()}
    chosen = [s for s in SCENARIOS.values() if s.name not in skip] if options.scenario == "all" else [SCENARIOS[options.scenario]]
    platform = Platform(options.base_url, username="manager", password="manager123", metrics_token=None, timeout_seconds=10.0)
    prometheus = Prometheus(options.prometheus_url)
    reports = []
    try:
        for scenario in chosen:
            report = drill_run(scenario, context=Context(site=site, supervisor=supervisor), platform=platform, prometheus=prometheus, options=options)
            print(report.render(), flush=True)
            reports.append(report)
    except KeyboardInterrupt:
        # The fault's undo has run on the way out (its context manager's finally).
        print("\ndrill: interrupted; the fault was undone", file=sys.stderr)
        sys.exit(130)
    if len(reports) > 1:
        print("\n== summary")
        for report in reports:
            print(f"  {report.scenario:<17} {'PASS' if report.passed else 'FAIL'}  placed {report.placed}, " f"violations {len(report.violations)}")
    if options.json:
        options.json.write_text(json.dumps([_jsonable(report) for report in reports], indent=2, default=str))
    sys.exit(0 if all(report.passed for report in reports) else 1)


def _jsonable(report: DrillReport) -> dict:
    # Not dataclasses.asdict: it rebuilds a Counter from (key, value) pairs, counting the pairs.
    data = {field.name: getattr(report, field.name) for field in fields(report)}
    data.update({name: dict(value) for name, value in data.items() if isinstance(value, Counter)})
    data["alerts"] = [asdict(alert) for alert in report.alerts]
    data["passed"] = report.passed
    return data
