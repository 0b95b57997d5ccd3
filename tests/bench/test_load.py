"""The bench's load generator and statistics, against a tiny HTTP server of the test's own."""
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.load import ErrorKind, checkout_load
from bench.stats import histogram_quantile, percentile
from tests.unit_support import _clean_cache, _clean_shared_state  # noqa: F401 (no Redis needed)

pytestmark = pytest.mark.unit


class SlowCheckout(BaseHTTPRequestHandler):
    """Carts answer at once; every third checkout is shed with 503, the others take 300 ms."""

    counter = 0
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.path.endswith("/items"):
            return self.answer(201, {})
        with SlowCheckout.lock:
            SlowCheckout.counter += 1
            number = SlowCheckout.counter
        if number % 3 == 0:
            return self.answer(503, {"title": "busy"}, {"Retry-After": "1"})
        time.sleep(0.3)
        return self.answer(201, {"orderNumber": f"ORD-{number}"})

    def answer(self, status: int, body: dict, headers: dict | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", "Content-Length": str(len(payload)), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), SlowCheckout)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_the_load_is_open_loop_a_slow_answer_never_delays_the_next_arrival(server):
    started = time.monotonic()
    results = checkout_load(base_url=server, rate=30, duration_seconds=1, products=[{"id": "p1"}, {"id": "p2"}], concurrency=32)
    elapsed = time.monotonic() - started

    assert len(results) == 30
    # A closed loop would need 20 × 300 ms = 6 s; the arrivals kept their schedule.
    assert elapsed < 3
    assert max(result.started_at - result.planned_at for result in results) < 0.5
    shed = [result for result in results if result.error is ErrorKind.SHED]
    assert len(shed) == 10 and all(result.retry_after == "1" and result.order_number is None for result in shed)
    ok = [result for result in results if result.error is None]
    assert len(ok) == 20 and all(result.order_number and result.checkout_seconds >= 0.3 for result in ok)


def test_a_server_that_is_gone_counts_as_connection_errors():
    results = checkout_load(base_url="http://127.0.0.1:9", rate=20, duration_seconds=0.25, products=[{"id": "p"}])

    assert [result.error for result in results] == [ErrorKind.CONNECTION] * 5


def test_an_answer_slower_than_the_time_limit_counts_as_a_timeout(server):
    # Three checkouts in a row: one is shed at once (every third), two take 300 ms, past the 100 ms limit.
    results = checkout_load(base_url=server, rate=30, duration_seconds=0.1, products=[{"id": "p"}], timeout_seconds=0.1)

    assert sorted(result.error.value for result in results) == sorted([ErrorKind.SHED.value] + [ErrorKind.TIMEOUT.value] * 2)


def test_the_load_refuses_a_host_that_is_not_this_machine():
    with pytest.raises(SystemExit):
        checkout_load(base_url="http://192.0.2.1:8000", rate=1, duration_seconds=1, products=[{"id": "p"}])


def test_histogram_quantile_interpolates_inside_the_bucket_like_promql():
    buckets = [(0.01, 0.0), (0.1, 50.0), (1.0, 100.0), (math.inf, 100.0)]

    assert histogram_quantile(buckets, 0.5) == pytest.approx(0.1)
    assert histogram_quantile(buckets, 0.25) == pytest.approx(0.055)
    assert histogram_quantile(buckets, 0.99) == pytest.approx(0.982)
    assert histogram_quantile([(0.1, 0.0), (math.inf, 4.0)], 0.5) == 0.1  # in +Inf: its lower bound
    assert math.isnan(histogram_quantile([(0.1, 0.0), (math.inf, 0.0)], 0.5))


def test_percentile_is_nearest_rank_and_nan_for_nothing():
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 3.0
    assert percentile(list(range(101)), 0.99) == 99
    assert math.isnan(percentile([], 0.5))
