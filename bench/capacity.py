"""Capacity: the highest checkout rate a platform sustains, searched, optionally A/B in one run.

    .venv/bin/python bench/capacity.py --checkout /path/to/main --checkout . \\
        [--start 8 --max 80 --duration 30 --provider-latency 0.3]

A rate is sustained when, over an open-loop run of `--duration` seconds at
that rate (bench/e2e.py's `bench_rate`), every checkout was accepted (no
error of any kind, 503s included), checkout p99 stayed under `--p99-ms`
(500), every order settled, and orders were paid at at least 0.95× the
checkout rate (provider latency `--provider-latency`, 0.3 s). The search
multiplies the rate by 1.5 from `--start` while it is sustained (divides
it, down to `--min`, while it is not), then
bisects between the last sustained and the first failed rate until they
are within `--resolution` (5%). Each `--checkout` is started with its own
run.sh (bench/platforms.py) and searched in turn; the machine's calibration
is measured before and after.
"""
import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.calibration import calibration_measure  # noqa: E402
from bench.e2e import Platform, bench_rate  # noqa: E402
from bench.load import catalog_products  # noqa: E402
from bench.platforms import StartedPlatform, platform_started  # noqa: E402

PAID_RATIO = 0.95
WARM_UP_SECONDS = 20


def verdict(row: dict, *, p99_seconds: float) -> str | None:
    """Why a rate is not sustained, or None when it is."""
    if row["errors"]:
        return f"errors {row['errors']}"
    if row["checkout_p99"] >= p99_seconds:
        return f"checkout p99 {row['checkout_p99'] * 1000:.0f} ms"
    if row["unsettled"] or row.get("orders_lost"):
        return f"{row['unsettled']} unsettled, {row.get('orders_lost', 0)} lost"
    if row["checkout_rate"] and row["paid_rate"] < PAID_RATIO * row["checkout_rate"]:
        return f"paid {row['paid_rate']:.1f}/s of {row['checkout_rate']:.1f}/s checkouts"
    return None


def rate_search(
    probe: Callable[[float], bool], *, start: float, lowest: float, highest: float, resolution: float
) -> tuple[float, float | None]:
    """Return (the highest rate `probe` passed, the lowest it failed above that; None if none failed up to `highest`).

    Up by 1.5× from `start` while rates pass; from a failing start, down by
    1.5× until one passes (not below `lowest`: then 0.0); then bisect until
    the two are within `resolution`.
    """
    sustained, failed, rate = 0.0, None, start
    while rate <= highest:
        if not probe(rate):
            failed = rate
            break
        sustained, rate = rate, rate * 1.5
    # A start above capacity: step down by the same factor until a rate is sustained.
    while failed is not None and not sustained and failed / 1.5 >= lowest:
        rate = failed / 1.5
        if probe(rate):
            sustained = rate
        else:
            failed = rate
    while failed is not None and sustained and failed > sustained * (1 + resolution):
        middle = (sustained + failed) / 2
        if probe(middle):
            sustained = middle
        else:
            failed = middle
    return sustained, failed


def search(platform: StartedPlatform, arguments) -> dict:
    manager = Platform(platform.base_url, username="manager", password="manager123", metrics_token=None, timeout_seconds=30)
    products = catalog_products(platform.base_url)
    probe_arguments = argparse.Namespace(
        base_url=platform.base_url, duration=arguments.duration, concurrency=400, timeout=10.0, settle_timeout=120.0
    )
    probes: list[dict] = []

    def probe(rate: float) -> bool:
        row = bench_rate(manager, products, rate=rate, arguments=probe_arguments)
        why = verdict(row, p99_seconds=arguments.p99_ms / 1000)
        probes.append({"rate": rate, "sustained": why is None, "why": why, "row": row})
        print(f"  {platform.label} {rate:.1f}/s: {'sustained' if why is None else 'not sustained: ' + why}", file=sys.stderr)
        time.sleep(arguments.pause)
        return why is None

    sustained, failed = rate_search(
        probe, start=arguments.start, lowest=arguments.min, highest=arguments.max, resolution=arguments.resolution
    )
    return {"sustained_rate": sustained, "first_failed_rate": failed, "probes": probes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", action="append", type=Path, required=True, help="repeat for A/B")
    parser.add_argument("--web-port", type=int, default=8000)
    parser.add_argument("--start", type=float, default=8.0, help="first rate tried, checkouts/s")
    parser.add_argument("--min", type=float, default=1.0, help="lowest rate tried when --start is not sustained")
    parser.add_argument("--max", type=float, default=120.0)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per probe")
    parser.add_argument("--pause", type=float, default=5.0, help="seconds of rest between probes")
    parser.add_argument("--p99-ms", type=float, default=500.0)
    parser.add_argument(
        "--resolution", type=float, default=0.05,
        help="stop bisecting when the first failed rate is within this share above the sustained one",
    )  # fmt: skip
    parser.add_argument("--provider-latency", type=float, default=0.3)
    parser.add_argument("--out", type=Path)
    arguments = parser.parse_args()
    if arguments.resolution <= 0:
        parser.error("--resolution must be above 0 (the bisection would never end)")
    before = calibration_measure()
    print(before.line(), file=sys.stderr, flush=True)
    results = {}
    for index, checkout in enumerate(arguments.checkout):
        label = chr(ord("a") + index)
        with platform_started(checkout.resolve(), label, web_port=arguments.web_port, log_dir=ROOT / ".run") as platform:
            time.sleep(WARM_UP_SECONDS)
            platform.manage("payment_faults", "--latency", str(arguments.provider_latency))
            results[label] = {"checkout": str(checkout.resolve()), **search(platform, arguments)}
    after = calibration_measure()
    print(f"sustained checkout rate (p99 < {arguments.p99_ms:g} ms, no errors, paid >= {PAID_RATIO}x), provider "
          f"{arguments.provider_latency:g} s, {arguments.duration:g} s per probe:")  # fmt: skip
    for label, result in results.items():
        print(f"  {label} {result['checkout']}: {result['sustained_rate']:.1f}/s (first failed: {result['first_failed_rate']})")
    if len(results) == 2 and results["a"]["sustained_rate"]:
        print(f"  b / a = {results['b']['sustained_rate'] / results['a']['sustained_rate']:.2f}")
    print(before.line() + "  (before)")
    print(after.line() + "  (after)")
    if arguments.out:
        figures = {"results": results, "calibration": [before.as_dict(), after.as_dict()], "arguments": vars(arguments)}
        arguments.out.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
