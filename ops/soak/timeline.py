"""The soak's timeline as a PNG: faults as bands, offered and acknowledged rate, latency, outbox backlog, consumer lag.

Drawn from the history alone. matplotlib (pinned in requirements-dev.txt,
which the run command installs; bench/e2e.py draws with it too): the most
widely kept Python plotting library, and its Agg backend writes a PNG with no
display, browser or image service (plotly would need kaleido's headless
Chromium for a static image).
"""
from collections import defaultdict
from pathlib import Path

from bench.stats import percentile
from ops.soak.history import HistoryData, Operation, Outcome

BIN_SECONDS = 5.0


def _bins(history: HistoryData) -> tuple[list[float], dict[str, list[float]]]:
    """Per BIN_SECONDS from the start: customers offered and checkouts acknowledged per second, checkout p50/p99."""
    origin = history.run.started_at
    first_request: dict[str, float] = {}
    acknowledged: dict[int, int] = defaultdict(int)
    latencies: dict[int, list[float]] = defaultdict(list)
    for request in history.requests:
        first_request[request.key] = min(first_request.get(request.key, request.sent_at), request.sent_at)
        if request.operation != Operation.CHECKOUT.value:
            continue
        index = int((request.finished_at - origin) // BIN_SECONDS)
        latencies[index].append(request.finished_at - request.sent_at)
        if request.outcome == Outcome.ACKNOWLEDGED.value and not request.replayed:
            acknowledged[index] += 1
    offered: dict[int, int] = defaultdict(int)
    for sent_at in first_request.values():
        offered[int((sent_at - origin) // BIN_SECONDS)] += 1
    last = max([*offered, *acknowledged, *latencies, 0])
    indices = list(range(last + 1))
    series = {
        "offered": [offered[index] / BIN_SECONDS for index in indices],
        "acknowledged": [acknowledged[index] / BIN_SECONDS for index in indices],
        "p50": [percentile(latencies[index], 0.5) for index in indices],
        "p99": [percentile(latencies[index], 0.99) for index in indices],
    }
    return [(index + 0.5) * BIN_SECONDS for index in indices], series


def _number(value: int | None) -> float:
    return float("nan") if value is None else float(value)


def timeline_draw(history: HistoryData, path: Path) -> Path:
    """Write the run's timeline to `path` (PNG); return it."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot

    origin = history.run.started_at
    times, series = _bins(history)
    samples = sorted(history.samples, key=lambda sample: sample.at)
    sample_times = [sample.at - origin for sample in samples]
    figure, (bands, rates, latency, backlog) = pyplot.subplots(
        4, 1, sharex=True, figsize=(14, 10), gridspec_kw={"height_ratios": [2, 1.3, 1.3, 1.3]}
    )
    kinds = sorted({fault.name for fault in history.faults})
    colours = pyplot.get_cmap("tab20")
    for lane, kind in enumerate(kinds):
        for fault in (fault for fault in history.faults if fault.name == kind):
            start = fault.started_at - origin
            width = max((fault.healed_at or fault.started_at) - fault.started_at, 1.0)
            bands.broken_barh([(start, width)], (lane - 0.4, 0.8), color=colours(lane % 20), hatch="//" if fault.error else None)
    bands.set_yticks(range(len(kinds)), kinds)
    bands.set_ylim(-0.6, max(len(kinds), 1) - 0.4)
    bands.set_title(
        f"soak seed {history.run.seed}: {history.run.minutes:g} min at {history.run.rate:g}/s, "
        f"{len(history.faults)} faults (hatched: failed to inject or undo)"
    )
    if history.end is not None and history.end.last_healed_at:
        for axis in (bands, rates, latency, backlog):
            axis.axvline(history.end.last_healed_at - origin, color="black", linestyle=":", linewidth=1)
    rates.plot(times, series["offered"], label="offered customers/s")
    rates.plot(times, series["acknowledged"], label="acknowledged checkouts/s")
    rates.set_ylabel("per second")
    rates.legend(loc="upper right")
    latency.plot(times, series["p50"], label="checkout p50")
    latency.plot(times, series["p99"], label="checkout p99")
    latency.set_ylabel("seconds")
    latency.legend(loc="upper right")
    # A sample that could not be read (None) is a gap in the line.
    backlog.plot(sample_times, [_number(sample.outbox_pending) for sample in samples], label="outbox PENDING rows")
    lag = backlog.twinx()
    lag.plot(sample_times, [_number(sample.consumer_lag) for sample in samples], color="tab:red", label="consumer lag (messages)")
    backlog.set_ylabel("outbox rows")
    lag.set_ylabel("consumer lag")
    backlog.legend(loc="upper left")
    lag.legend(loc="upper right")
    backlog.set_xlabel("seconds since the start (dotted: the last fault healed)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path
