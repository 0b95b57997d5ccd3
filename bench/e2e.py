"""End-to-end bench: offer checkouts at fixed rates to the running platform, report what it keeps up with.

    .venv/bin/python bench/e2e.py --base-url http://127.0.0.1:8000 --rates 10,25,50 \\
        --duration 60 --provider-latency 0.3 [--out .run/bench-e2e]

Starts nothing: it drives the platform started by `bash scripts/run.sh` (run
it with the same environment, so `manage.py payment_faults` reaches the same
payment provider, PAYMENT_PROVIDER_URL). For each rate it offers an open-loop checkout load (bench/load.py),
waits for the orders to settle, and reads the outcome from the platform
itself: order timestamps through the manager API, the relay's
`outbox_commit_to_publish_seconds` histogram from /metrics. Printed per rate:
checkout p50/p99, goodput, errors by kind, checkout→PAID p50/p99 (order
created_at → updated_at when PAID, one clock), commit→publish p50/p99, and
the order-management rate next to the checkout rate, the 503s' latency and
Retry-After, orders lost or unacknowledged; written as JSON and as
a PNG plot of latency and throughput against the offered rate. The
machine's calibration (bench/calibration.py) is printed before and after.

The provider's latency is set at run time through `manage.py payment_faults
--latency` (the provider's /_faults, over HTTP) and reset afterwards whatever
happens; where that command does not exist, the bench says so and runs with
the provider as it is. The checkouts are real orders on that platform's demo catalog (it
tops up the stock of the products it uses through the manager API).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from bench.calibration import calibration_measure  # noqa: E402
from bench.load import API, CheckoutResult, ErrorKind, catalog_products, checkout_load, loopback_only  # noqa: E402
from bench.stats import histogram_quantile, percentile  # noqa: E402

UNSETTLED = ("PENDING", "PROCESSING")
PAID = ("PAID", "FULFILLED")
COMMIT_TO_PUBLISH = "outbox_commit_to_publish_seconds"
ORDER_TOPIC = "orders.created"


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Platform:
    """The manager's view of the running platform: catalog, orders, metrics."""

    def __init__(self, base_url: str, *, username: str, password: str, metrics_token: str | None, timeout_seconds: float) -> None:
        self.base_url = base_url
        self.timeout = timeout_seconds
        self.http = requests.Session()
        credentials = {"username": username, "password": password}
        answer = self.http.post(f"{base_url}{API}/auth/login", json=credentials, timeout=timeout_seconds)
        if answer.status_code != 200:
            raise SystemExit(
                f"manager login as {username!r} failed ({answer.status_code}): the bench reads orders through the manager API"
            )
        self.http.headers["Authorization"] = f"Bearer {answer.json()['accessToken']}"
        self.metrics_headers = {"Authorization": f"Bearer {metrics_token}"} if metrics_token else {}

    def restock(self, products: list[dict], *, at_least: int) -> None:
        """Set every product's stock to `at_least` units, so the load never runs out of stock.

        Always written, never skipped on what `products` says: that is from
        before the orders placed since (a capacity search runs several loads
        in a row, and a skip on a stale count ran the later ones out of stock).
        """
        for product in products:
            body = {field: product[field] for field in ("sku", "name", "description", "price", "categoryId", "isActive")}
            answer = self.http.put(
                f"{self.base_url}{API}/products/{product['id']}",
                json={**body, "inventoryQuantity": at_least},
                timeout=self.timeout,
            )
            answer.raise_for_status()
            product["inventoryQuantity"] = at_least

    def _orders_page(self, *, since: datetime, page: int, size: int, status: str | None = None) -> dict:
        params = {"startDate": since.isoformat().replace("+00:00", "Z"), "page": page, "size": size}
        if status:
            params["status"] = status
        answer = self.http.get(f"{self.base_url}{API}/orders", params=params, timeout=self.timeout)
        answer.raise_for_status()
        return answer.json()

    def unsettled(self, *, since: datetime) -> int:
        """Count the orders created since `since` that are still PENDING or PROCESSING."""
        return sum(self._orders_page(since=since, page=0, size=1, status=status)["totalElements"] for status in UNSETTLED)

    def orders(self, *, since: datetime) -> dict[str, dict]:
        """Return every order created since `since`, by number."""
        found: dict[str, dict] = {}
        page = 0
        while True:
            content = self._orders_page(since=since, page=page, size=100)["content"]
            found.update({order["orderNumber"]: order for order in content})
            if len(content) < 100:
                return found
            page += 1

    def histogram(self, name: str, **labels: str) -> dict[float, float]:
        """Return the cumulative buckets (upper bound → count) of one histogram series on /metrics."""
        answer = requests.get(f"{self.base_url}/metrics", headers=self.metrics_headers, timeout=self.timeout)
        answer.raise_for_status()
        buckets: dict[float, float] = {}
        for family in text_string_to_metric_families(answer.text):
            if family.name != name:
                continue
            for sample in family.samples:
                if sample.name == f"{name}_bucket" and all(sample.labels.get(k) == v for k, v in labels.items()):
                    bound = float(sample.labels["le"])
                    buckets[bound] = buckets.get(bound, 0.0) + sample.value
        return buckets


def payment_faults(*arguments: str) -> subprocess.CompletedProcess | None:
    """Run `manage.py payment_faults` with this environment; None when the platform's code has no such command."""
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    done = subprocess.run(
        [sys.executable, "manage.py", "payment_faults", *arguments],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if done.returncode != 0 and "Unknown command" in done.stderr:
        return None
    if done.returncode != 0:
        raise SystemExit(f"manage.py payment_faults {' '.join(arguments)} failed: {done.stderr.strip()[-500:]}")
    return done


@contextmanager
def provider_latency(seconds: float | None):
    """Set the payment provider's latency for the bench and reset it afterwards; yield the latency in force (or None)."""
    if seconds is None:
        yield None
        return
    if payment_faults("--latency", str(seconds)) is None:
        print(
            f"NOTE: `manage.py payment_faults` does not exist in this checkout: --provider-latency {seconds} is skipped; "
            "the provider answers as it is configured",
            file=sys.stderr,
        )
        yield None
        return
    try:
        yield seconds
    finally:
        payment_faults("--reset")


def histogram_delta(before: dict[float, float], after: dict[float, float]) -> list[tuple[float, float]]:
    return [(bound, count - before.get(bound, 0.0)) for bound, count in after.items()]


def bench_rate(platform: Platform, products: list[dict], *, rate: float, arguments: argparse.Namespace) -> dict:
    """Offer one rate, wait for its orders to settle, return its figures."""
    platform.restock(products, at_least=int(rate * arguments.duration / len(products)) + 100)
    since = datetime.now(timezone.utc) - timedelta(seconds=1)
    published_before = platform.histogram(COMMIT_TO_PUBLISH, topic=ORDER_TOPIC)

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\r  {rate:g}/s: {done}/{total} offered", end="", file=sys.stderr, flush=True)
        elif done % max(int(rate * 10), 1) == 0:  # a log file gets a line every 10 s
            print(f"  {rate:g}/s: {done}/{total} offered", file=sys.stderr, flush=True)

    results = checkout_load(
        base_url=arguments.base_url,
        rate=rate,
        duration_seconds=arguments.duration,
        products=products,
        concurrency=arguments.concurrency,
        timeout_seconds=arguments.timeout,
        on_progress=progress,
    )
    print(f"\r  {rate:g}/s: {len(results)} offered; waiting for the orders to settle", file=sys.stderr, flush=True)
    deadline = time.monotonic() + arguments.settle_timeout
    while platform.unsettled(since=since) and time.monotonic() < deadline:
        time.sleep(2)
    numbers = {result.order_number for result in results if result.order_number}
    every_order = platform.orders(since=since)
    orders = {number: order for number, order in every_order.items() if number in numbers}
    commit_to_publish = histogram_delta(published_before, platform.histogram(COMMIT_TO_PUBLISH, topic=ORDER_TOPIC))
    row = summarize(rate, results, orders, commit_to_publish)
    # Lost: a 201 whose order does not exist. Unexpected: an order no client
    # was told about (a checkout that timed out or was refused yet committed,
    # or one done twice). The platform is the bench's alone while it runs.
    row["orders_lost"] = len(numbers - orders.keys())
    row["orders_unexpected"] = len(every_order) - len(orders)
    return row


def summarize(rate: float, results: list[CheckoutResult], orders: dict[str, dict], commit_to_publish) -> dict:
    ok = [result for result in results if result.error is None]
    # Client errors by status: a 404 or 409 says what the bench did wrong.
    errors = Counter(
        str(result.status) if result.error is ErrorKind.CLIENT else result.error.value for result in results if result.error
    )
    shed = [result.checkout_seconds for result in results if result.error is ErrorKind.SHED]
    created = sorted(parse_time(order["createdAt"]) for order in orders.values())
    paid = [order for order in orders.values() if order["status"] in PAID]
    to_paid = [parse_time(order["updatedAt"]) - parse_time(order["createdAt"]) for order in paid]
    paid_at = sorted(parse_time(order["updatedAt"]) for order in paid)
    # Both rates run from the first order's creation: if order management
    # falls behind, its last payment comes late and its rate drops below.
    checkout_rate = len(created) / max(created[-1] - created[0] + 1 / rate, 1e-9) if created else 0.0
    paid_rate = len(paid_at) / max(paid_at[-1] - created[0], 1 / rate) if paid_at else 0.0
    published = sum(count for bound, count in commit_to_publish if math.isinf(bound))
    return {
        "offered_rate": rate,
        "offered": len(results),
        "ok": len(ok),
        # Over the whole span, first arrival to last answer (at least the
        # schedule's n / rate): an overloaded platform stretches it, so this
        # is what it actually completed per second.
        "goodput": len(ok) / max(max(r.finished_at for r in results) - min(r.planned_at for r in results), len(results) / rate),
        "errors": dict(errors),
        "checkout_p50": percentile([r.checkout_seconds for r in ok], 0.50),
        "checkout_p99": percentile([r.checkout_seconds for r in ok], 0.99),
        "shed_p50": percentile(shed, 0.50),
        "shed_p99": percentile(shed, 0.99),
        "shed_max": max(shed, default=math.nan),
        # Refused at the checkout itself, after its cart add was served: work the platform did for nothing.
        "shed_at_checkout": sum(1 for r in results if r.error is ErrorKind.SHED and r.sent_at > r.started_at),
        "shed_without_retry_after": sum(1 for r in results if r.error is ErrorKind.SHED and not r.retry_after),
        "generator_lag_p99": percentile([r.started_at - r.planned_at for r in results], 0.99),
        "orders_found": len(orders),
        "paid": len(paid),
        "failed": sum(1 for order in orders.values() if order["status"] == "FAILED"),
        "unsettled": sum(1 for order in orders.values() if order["status"] in UNSETTLED),
        "to_paid_p50": percentile(to_paid, 0.50),
        "to_paid_p99": percentile(to_paid, 0.99),
        "published": published,
        "commit_to_publish_p50": histogram_quantile(commit_to_publish, 0.50),
        "commit_to_publish_p99": histogram_quantile(commit_to_publish, 0.99),
        "checkout_rate": checkout_rate,
        "paid_rate": paid_rate,
    }


def milliseconds(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.0f}"


def table(rows: list[dict], latency: float | None) -> str:
    header = (
        f"{'offered/s':>9} {'ok/sent':>11} {'goodput/s':>9} {'×offer':>6} {'errors':>20} "
        f"{'checkout p50/p99 ms':>20} {'→PAID p50/p99 ms':>18} {'→PAID p99 ×prov':>15} "
        f"{'commit→pub p50/p99 ms':>21} {'checkout/s':>10} {'paid/s':>7} {'×checkout':>9} {'unsettled':>9} "
        f"{'503 p50/p99/max ms':>18} {'503 no R-A':>10} {'lost/unack':>10}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        errors = " ".join(f"{kind}:{count}" for kind, count in sorted(row["errors"].items())) or "0"
        provider = "-" if not latency or math.isnan(row["to_paid_p99"]) else f"{row['to_paid_p99'] / latency:.1f}"
        ratio = row["paid_rate"] / row["checkout_rate"] if row["checkout_rate"] else math.nan
        lines.append(
            f"{row['offered_rate']:>9g} {row['ok']:>5}/{row['offered']:<5} {row['goodput']:>9.1f} "
            f"{row['goodput'] / row['offered_rate']:>6.2f} {errors:>20} "
            f"{milliseconds(row['checkout_p50']) + '/' + milliseconds(row['checkout_p99']):>20} "
            f"{milliseconds(row['to_paid_p50']) + '/' + milliseconds(row['to_paid_p99']):>18} {provider:>15} "
            f"{milliseconds(row['commit_to_publish_p50']) + '/' + milliseconds(row['commit_to_publish_p99']):>21} "
            f"{row['checkout_rate']:>10.1f} {row['paid_rate']:>7.1f} {ratio:>9.2f} {row['unsettled']:>9} "
            f"{'/'.join(milliseconds(row[key]) for key in ('shed_p50', 'shed_p99', 'shed_max')):>18} "
            f"{row['shed_without_retry_after']:>10} {str(row.get('orders_lost', '-')) + '/' + str(row.get('orders_unexpected', '-')):>10}"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot

    rates = [row["offered_rate"] for row in rows]
    figure, (latency_axes, rate_axes) = pyplot.subplots(1, 2, figsize=(13, 5))
    for key, label, marker, colour in (
        ("checkout", "checkout", "o", "tab:blue"),
        ("to_paid", "checkout→PAID", "s", "tab:red"),
        ("commit_to_publish", "commit→publish", "^", "tab:green"),
    ):
        for quantile, line in (("p50", ":"), ("p99", "-")):
            values = [row[f"{key}_{quantile}"] * 1000 for row in rows]
            latency_axes.plot(rates, values, marker=marker, linestyle=line, color=colour, label=f"{label} {quantile}")
    latency_axes.set_yscale("log")
    latency_axes.set_xlabel("offered checkouts/s")
    latency_axes.set_ylabel("latency (ms, log)")
    latency_axes.set_title("latency against offered rate")
    latency_axes.grid(True, which="both", alpha=0.3)
    latency_axes.legend(fontsize=8)
    rate_axes.plot(rates, [row["goodput"] for row in rows], "o-", color="tab:blue", label="checkout goodput")
    rate_axes.plot(rates, [row["paid_rate"] for row in rows], "s-", color="tab:red", label="orders paid/s")
    rate_axes.plot(rates, rates, "k--", alpha=0.4, label="offered (ideal)")
    rate_axes.set_ylim(bottom=0)
    rate_axes.set_xlabel("offered checkouts/s")
    rate_axes.set_ylabel("per second")
    rate_axes.set_title("throughput against offered rate")
    rate_axes.grid(True, alpha=0.3)
    rate_axes.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--rates", default="10,25,50", help="offered checkouts per second, comma-separated")
    parser.add_argument("--duration", type=float, default=60, help="seconds of load per rate")
    parser.add_argument("--provider-latency", type=float, help="seconds; set through manage.py payment_faults")
    parser.add_argument("--concurrency", type=int, default=200, help="load threads (requests in flight at most)")
    parser.add_argument("--timeout", type=float, default=10, help="per-request time limit, seconds")
    parser.add_argument("--settle-timeout", type=float, default=300, help="longest wait for a rate's orders to settle")
    parser.add_argument("--pause", type=float, default=5, help="seconds of rest between rates")
    parser.add_argument("--manager", default="manager:manager123", help="username:password of a manager")
    parser.add_argument(
        "--metrics-token", default=os.environ.get("METRICS_BEARER_TOKEN"), help="bearer token for /metrics, if required"
    )
    parser.add_argument("--out", type=Path, help="file prefix for .json and .png (default .run/bench-e2e-<time>)")
    arguments = parser.parse_args()
    rates = [float(rate) for rate in arguments.rates.split(",")]
    loopback_only(arguments.base_url)
    out = arguments.out or ROOT / ".run" / f"bench-e2e-{datetime.now():%Y%m%d-%H%M%S}"
    out = out.with_suffix("") if out.suffix in (".png", ".json") else out
    out.parent.mkdir(parents=True, exist_ok=True)

    username, _, password = arguments.manager.partition(":")
    try:
        platform = Platform(
            arguments.base_url, username=username, password=password, metrics_token=arguments.metrics_token, timeout_seconds=30
        )
        products = catalog_products(arguments.base_url)
    except requests.ConnectionError:
        raise SystemExit(f"no platform answers at {arguments.base_url}: start it with `bash scripts/run.sh`") from None
    calibration = calibration_measure()
    print(calibration.line(), file=sys.stderr, flush=True)
    rows = []
    with provider_latency(arguments.provider_latency) as latency:
        described = f"{latency:g} s (set by the bench)" if latency is not None else "the platform's own (not set by the bench)"
        print(
            f"platform {arguments.base_url}; provider latency {described}; "
            f"{len(products)} products; {arguments.duration:g} s per rate",
            file=sys.stderr,
        )
        for index, rate in enumerate(rates):
            if index:
                time.sleep(arguments.pause)
            rows.append(bench_rate(platform, products, rate=rate, arguments=arguments))
            if rows[-1]["errors"].get(ErrorKind.THROTTLED.value):
                print(
                    "  NOTE: 429 answers: the platform's per-client checkout limit throttled the bench; start it with "
                    "THROTTLE_CHECKOUT_CLIENT_RATE raised (e.g. 100000/min) to measure capacity",
                    file=sys.stderr,
                )
    report = table(rows, latency)
    print(report)
    after = calibration_measure()
    print(f"{calibration.line()}  (before)\n{after.line()}  (after)")
    title = f"e2e bench, provider latency {latency:g} s" if latency is not None else "e2e bench, provider latency as configured"
    plot(rows, out.with_suffix(".png"), title)
    figures = {
        "provider_latency": latency, "duration": arguments.duration, "rows": rows,
        "calibration": [calibration.as_dict(), after.as_dict()],
    }  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(figures, indent=2))
    print(f"\nwritten: {out.with_suffix('.png')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
