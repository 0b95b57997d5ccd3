"""Cost bench: CPU per accepted order, by process group, and what the idle platform burns.

    .venv/bin/python bench/cost.py --rate 15 --duration 60 --idle 30 --provider-latency 0.3
    .venv/bin/python bench/cost.py --checkout /path/to/main --checkout . --rate 15   # A/B, back to back

Without `--checkout` it measures the platform already running from this
checkout (`bash scripts/run.sh`). With one or more `--checkout DIR` it starts
each checkout's platform in turn (`DIR/scripts/run.sh`, a database of its
own, the same ports), measures it, and stops it, so two versions are judged
in one run on the same machine state.

For each platform: the CPU of every platform process (bench/processes.py)
over `--idle` seconds with no traffic, as a share of one core; then an
open-loop checkout load (bench/load.py) at `--rate` for `--duration` seconds,
until every order it placed is settled, as ms of CPU per accepted checkout
(201), by group. Also counted: PostgreSQL connections opened to the
platform's database during the load, and by which group. The machine's
calibration (bench/calibration.py) is measured in the same run.

With `--published-rows N` (with `--checkout` only) the platform's outbox is
given N PUBLISHED rows before it is measured, what a week of retention leaves
behind (OUTBOX_RETENTION_HOURS): a fresh database has none, and reads that
visit them (a scrape every 15 s) cost nothing there.

CPU time per order is the figure a shared machine blurs least; the load
generator's own CPU is not counted (it is this process).
"""
import argparse
import json
import os
import re
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from bench.calibration import calibration_measure  # noqa: E402
from bench.e2e import Platform  # noqa: E402
from bench.load import catalog_products, checkout_load  # noqa: E402
from bench.platforms import POSTGRES_SERVER, platform_started  # noqa: E402
from bench.processes import (  # noqa: E402
    PlatformProcesses,
    cpu_seconds_by_group,
    postgres_backends,
    socket_owner,
    tcp_socket_inodes,
)
from bench.stats import percentile  # noqa: E402

WARM_UP_SECONDS = 20


class ConnectionWatch:
    """Samples the platform database's backends; names the client group of each new one."""

    def __init__(self, processes: PlatformProcesses, database: str) -> None:
        self.processes, self.database = processes, database
        self.opened: Counter = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "ConnectionWatch":
        self._known = postgres_backends(self.processes.snapshot(), self.database)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            snapshot = self.processes.snapshot()
            backends = postgres_backends(snapshot, self.database)
            new = backends - self._known
            self._known |= backends
            if not new:
                continue
            others = [pid for pid, process in snapshot.items() if process.group != "postgresql"]
            for pid in new:
                port = re.search(r"\((\d+)\)", snapshot[pid].command)
                owner = socket_owner(tcp_socket_inodes(int(port.group(1))), others) if port else None
                self.opened[snapshot[owner].group if owner in snapshot else "unknown"] += 1


def _idle(processes: PlatformProcesses, seconds: float, when: str) -> Counter:
    print(f"  idle {seconds:g} s {when}", file=sys.stderr, flush=True)
    before = processes.snapshot()
    time.sleep(seconds)
    return cpu_seconds_by_group(before, processes.snapshot())


def measure(base_url: str, processes: PlatformProcesses, database: str, *, arguments) -> dict:
    platform = Platform(base_url, username="manager", password="manager123", metrics_token=None, timeout_seconds=30)
    products = catalog_products(base_url)
    platform.restock(products, at_least=int(arguments.rate * arguments.duration / max(len(products), 1)) + 200)
    idle = _idle(processes, arguments.idle, "before the load")
    print(f"  load {arguments.rate:g}/s for {arguments.duration:g} s", file=sys.stderr, flush=True)
    since = datetime.now(timezone.utc) - timedelta(seconds=1)
    before, started = processes.snapshot(), time.monotonic()
    with ConnectionWatch(processes, database) as connections:
        results = checkout_load(
            base_url=base_url, rate=arguments.rate, duration_seconds=arguments.duration, products=products,
            timeout_seconds=10,
        )  # fmt: skip
        deadline = time.monotonic() + arguments.settle_timeout
        while platform.unsettled(since=since) and time.monotonic() < deadline:
            time.sleep(1)
        loaded = cpu_seconds_by_group(before, processes.snapshot())
    window = time.monotonic() - started
    idle_after = _idle(processes, arguments.idle, "after the load")
    accepted = [result for result in results if result.error is None]
    return {
        # Idle twice: fresh, and after traffic (connections, consumer groups and caches then exist).
        "idle_cpu_share": {group: seconds / arguments.idle for group, seconds in idle.items()},
        "idle_after_cpu_share": {group: seconds / arguments.idle for group, seconds in idle_after.items()},
        "load_cpu_seconds": dict(loaded),
        "window_seconds": window,
        "offered": len(results),
        "accepted": len(accepted),
        "unsettled": platform.unsettled(since=since),
        "checkout_p99": percentile([r.checkout_seconds for r in accepted], 0.99),
        "connections_opened": dict(connections.opened),
    }


# Rows written per statement: a few seconds each, so progress shows.
HISTORY_ROWS_PER_STATEMENT = 500_000
_HISTORY_SQL = """
    INSERT INTO outbox_outboxevent (event_id, aggregate_type, aggregate_id, topic, key, event_type, payload, headers,
                                    status, attempts, next_attempt_at, last_error, created_at, published_at)
    SELECT gen_random_uuid(), 'order', 'history-' || (g / 2), 'orders.created', 'history-' || (g / 2), 'ORDER_CREATED',
           '{"eventType": "OrderCreated"}'::jsonb, '{}'::jsonb, 'PUBLISHED', 1, NULL, '',
           now() - make_interval(secs => (%(total)s - g) / 30.0), now() - make_interval(secs => (%(total)s - g) / 30.0)
    FROM generate_series(%(first)s, %(last)s) AS g
"""


def outbox_history_write(database: str, rows: int) -> None:
    """Give the platform's outbox `rows` PUBLISHED rows, as 30 events a second over the past, then VACUUM ANALYZE it.

    The vacuum is autovacuum's work done at once, so the idle window does not
    measure it. Same columns since the outbox's first migration, so any
    version of the platform takes them.
    """
    import psycopg2

    connection = psycopg2.connect(f"{POSTGRES_SERVER}/{database}")
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            for first in range(1, rows + 1, HISTORY_ROWS_PER_STATEMENT):
                last = min(first + HISTORY_ROWS_PER_STATEMENT - 1, rows)
                cursor.execute(_HISTORY_SQL, {"total": rows, "first": first, "last": last})
                print(f"  outbox history: {last:,} of {rows:,} PUBLISHED rows written", file=sys.stderr, flush=True)
            cursor.execute("VACUUM (ANALYZE) outbox_outboxevent")
    finally:
        connection.close()


def measure_checkout(checkout: Path, label: str, arguments) -> dict:
    """Start `checkout`'s platform, let it warm up, measure it; it is stopped whatever happens."""
    with platform_started(checkout, label, web_port=arguments.web_port, log_dir=ROOT / ".run") as platform:
        if arguments.published_rows:
            outbox_history_write(platform.database, arguments.published_rows)
        time.sleep(WARM_UP_SECONDS)
        if arguments.provider_latency is not None:
            platform.manage("payment_faults", "--latency", str(arguments.provider_latency))
        processes = PlatformProcesses(platform.run_dir)
        figures = measure(platform.base_url, processes, platform.database, arguments=arguments)
        return {**figures, "published_rows": arguments.published_rows}


def report(rows: dict[str, dict]) -> str:
    groups = sorted({group for row in rows.values() for group in (*row["load_cpu_seconds"], *row["idle_cpu_share"], *row["idle_after_cpu_share"])})
    labels = list(rows)
    width = max(16, *(len(label) + 14 for label in labels))
    lines = ["ms of CPU per accepted checkout, by group; the idle platform before and after the load, % of one core"]
    columns = ("ms/order", "idle%", "idle-after%")
    lines.append(f"{'group':<14}" + "".join(f"{label + ' ' + column:>{width}}" for label in labels for column in columns))
    for group in groups:
        cells = ""
        for label in labels:
            row = rows[label]
            per_order = row["load_cpu_seconds"].get(group, 0.0) * 1000 / max(row["accepted"], 1)
            cells += f"{per_order:>{width}.1f}{row['idle_cpu_share'].get(group, 0.0) * 100:>{width}.1f}"
            cells += f"{row['idle_after_cpu_share'].get(group, 0.0) * 100:>{width}.1f}"
        lines.append(f"{group:<14}" + cells)
    total = ""
    for label in labels:
        row = rows[label]
        total += f"{sum(row['load_cpu_seconds'].values()) * 1000 / max(row['accepted'], 1):>{width}.1f}"
        total += f"{sum(row['idle_cpu_share'].values()) * 100:>{width}.1f}"
        total += f"{sum(row['idle_after_cpu_share'].values()) * 100:>{width}.1f}"
    lines.append(f"{'TOTAL':<14}" + total)
    for label, row in rows.items():
        lines.append(
            f"{label}: {row['accepted']}/{row['offered']} accepted, {row['unsettled']} unsettled at the end, "
            f"checkout p99 {row['checkout_p99'] * 1000:.0f} ms, window {row['window_seconds']:.0f} s, "
            f"PostgreSQL connections opened during the load: {row['connections_opened'] or 0}"
            + (f", outbox history {row['published_rows']:,} PUBLISHED rows" if row.get("published_rows") else "")
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkout", action="append", type=Path, help="start and measure this checkout's platform (repeat for A/B)"
    )
    parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="the running platform (without --checkout)")
    parser.add_argument("--web-port", type=int, default=8000, help="WEB_PORT for the platforms --checkout starts")
    parser.add_argument("--rate", type=float, default=15.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument(
        "--provider-latency", type=float, default=0.3, help="seconds, set with manage.py payment_faults (--checkout only)"
    )
    parser.add_argument("--settle-timeout", type=float, default=300.0)
    parser.add_argument(
        "--published-rows", type=int, default=0, help="PUBLISHED rows written into the outbox first (--checkout only)"
    )
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    arguments = parser.parse_args()
    (ROOT / ".run").mkdir(exist_ok=True)
    if arguments.published_rows and not arguments.checkout:
        parser.error("--published-rows writes into a platform the bench starts: give --checkout")
    calibration = calibration_measure()
    print(calibration.line(), file=sys.stderr, flush=True)
    if arguments.checkout:
        rows = {}
        for index, checkout in enumerate(arguments.checkout):
            label = chr(ord("a") + index)
            rows[label] = measure_checkout(checkout.resolve(), label, arguments)
            rows[label]["checkout"] = str(checkout.resolve())
    else:
        database = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ecommerce").rsplit("/", 1)[1]
        processes = PlatformProcesses(ROOT / ".run")
        rows = {"this": measure(arguments.base_url, processes, database, arguments=arguments)}
    print(report(rows))
    after = calibration_measure()
    print(calibration.line() + "  (before)")
    print(after.line() + "  (after)")
    if arguments.out:
        figures = {"rows": rows, "calibration": [calibration.as_dict(), after.as_dict()], "arguments": vars(arguments)}
        arguments.out.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
