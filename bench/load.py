"""An open-loop checkout load against a running platform, for the bench and the fault drills.

Open loop: checkout i is due at start + i / rate whatever happened to the
ones before it, the way real customers arrive; a closed loop (send, wait,
send) slows down with the server and hides its queueing. Each checkout is
what a customer does: add a product to a fresh cart, then `POST /checkout`
with an `Idempotency-Key`. The load is bounded in count (rate × duration) and
in time (every request has a time limit), and goes to loopback only.

    from bench.load import catalog_products, checkout_load
    results = checkout_load(base_url=url, rate=10, duration_seconds=30, products=catalog_products(url))

Depends on nothing of the platform's code: it speaks HTTP only.
"""
import http.client
import ipaddress
import json
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

import requests

API = "/api/v1"
CUSTOMER = {
    "name": "Bench Customer",
    "email": "bench@example.com",
    "phone": "+15551234567",
    "shippingAddress": {"street": "1 Bench Way", "city": "London", "state": "LDN", "postalCode": "N1 1AA", "country": "GB"},
}


class ErrorKind(str, Enum):
    SHED = "503"  # refused fast by a saturated web tier: the client retries with the same key
    THROTTLED = "429"  # the per-client checkout limit: raise it on the platform for a bench
    SERVER = "5xx"
    CLIENT = "4xx"  # e.g. out of stock: the bench's doing, not the platform's
    TIMEOUT = "timeout"
    CONNECTION = "connection"


@dataclass(frozen=True)
class CheckoutResult:
    planned_at: float  # time.time() the checkout was due
    started_at: float  # when a load thread took it (later than planned when the generator falls behind)
    sent_at: float  # when POST /checkout was sent
    finished_at: float
    status: int | None  # HTTP status of the failing step, or of the checkout
    error: ErrorKind | None
    order_number: str | None
    retry_after: str | None = None
    content_type: str | None = None  # of an error answer: every one must be problem+json

    @property
    def checkout_seconds(self) -> float:
        """The checkout request alone, send to answer."""
        return self.finished_at - self.sent_at


def loopback_only(base_url: str) -> None:
    """Refuse anything but this machine: a load generator must not be pointed elsewhere by mistake."""
    host = urlsplit(base_url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        addresses = set()
    if not addresses or not all(ipaddress.ip_address(address).is_loopback for address in addresses):
        raise SystemExit(f"refusing to load {base_url}: the bench drives a platform on this machine only")


def catalog_products(base_url: str, *, timeout_seconds: float = 10.0) -> list[dict]:
    """Return the active products of the catalog (the demo catalog on a fresh platform)."""
    for _ in range(5):
        response = requests.get(f"{base_url}{API}/products", params={"size": 100}, timeout=timeout_seconds)
        if response.status_code != 503:
            break
        # A platform still shedding an earlier load: come back when it says, as any client does.
        time.sleep(float(response.headers.get("Retry-After", 1)))
    response.raise_for_status()
    products = [product for product in response.json()["content"] if product["isActive"]]
    if not products:
        raise SystemExit("the catalog has no active product: start the platform with `bash scripts/run.sh` (it seeds one)")
    return products


def _error_kind(status: int) -> ErrorKind:
    if status == 503:
        return ErrorKind.SHED
    if status == 429:
        return ErrorKind.THROTTLED
    return ErrorKind.SERVER if status >= 500 else ErrorKind.CLIENT


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def _poster(base_url: str, timeout_seconds: float) -> Callable[[str, dict, dict[str, str]], _Answer]:
    """POST JSON with the standard library's http.client, a connection per request.

    Not requests, as everywhere else in the benches: the generator shares
    the platform's cores, and every CPU-millisecond it spends is one the
    platform under test does not get; requests spends several times what
    http.client does per POST (commit 2e4a403 says how it was timed). The
    platform closes every connection after its answer (gunicorn.conf.py,
    keepalive 0), so a pool would hold nothing.
    """
    parts = urlsplit(base_url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    prefix = parts.path.rstrip("/")

    def post(path: str, body: dict, headers: dict[str, str]) -> _Answer:
        connection = connection_class(parts.hostname, parts.port, timeout=timeout_seconds)
        try:
            connection.request(
                "POST", prefix + path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json", **headers}
            )
            response = connection.getresponse()
            return _Answer(response.status, response.headers, response.read())
        finally:
            connection.close()

    return post


def checkout_load(
    *,
    base_url: str,
    rate: float,
    duration_seconds: float,
    products: Sequence[dict],
    concurrency: int = 200,
    timeout_seconds: float = 10.0,
    on_progress: Callable[[int, int], None] | None = None,
    on_result: Callable[[CheckoutResult], None] | None = None,
) -> list[CheckoutResult]:
    """Offer `rate` checkouts a second for `duration_seconds`; return one result per checkout.

    The caller's thread only keeps the schedule; `concurrency` threads do the
    requests, so a slow answer never delays the next arrival (until every
    thread is busy: then `started_at` falls behind `planned_at`, which the
    results show). `on_result` is called with each result as it comes, from
    the load threads (the fault drills' progress line).
    """
    loopback_only(base_url)
    total = max(int(rate * duration_seconds), 1)
    post = _poster(base_url, timeout_seconds)

    def one(index: int, planned_at: float) -> CheckoutResult:
        started_at = sent_at = time.time()

        def result(
            status: int | None,
            error: ErrorKind | None,
            *,
            order_number: str | None = None,
            retry_after: str | None = None,
            content_type: str | None = None,
        ) -> CheckoutResult:
            return CheckoutResult(
                planned_at, started_at, sent_at, time.time(), status, error, order_number, retry_after, content_type
            )

        cart = f"bench-{uuid.uuid4().hex}"
        # Spread over the catalog: one product's row lock serialises the checkouts that take it.
        product = products[index % len(products)]
        try:
            answer = post(f"{API}/carts/{cart}/items", {"productId": product["id"], "quantity": 1}, {})
            if answer.status < 300:
                sent_at = time.time()
                answer = post(
                    f"{API}/checkout",
                    {"sessionId": cart, "customerInfo": CUSTOMER},
                    {"Idempotency-Key": f"bench-{cart}"},
                )
        except TimeoutError:  # connecting or waiting for the answer took longer than timeout_seconds
            return result(None, ErrorKind.TIMEOUT)
        except (OSError, http.client.HTTPException):  # refused, reset, closed before a whole answer
            return result(None, ErrorKind.CONNECTION)
        if answer.status == 201:
            return result(201, None, order_number=json.loads(answer.body)["orderNumber"])
        return result(
            answer.status,
            _error_kind(answer.status),
            retry_after=answer.headers.get("Retry-After"),
            content_type=answer.headers.get("Content-Type"),
        )

    def reported(index: int, planned_at: float) -> CheckoutResult:
        outcome = one(index, planned_at)
        if on_result is not None:
            on_result(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="checkout") as pool:
        start = time.time() + 0.2
        futures = []
        for index in range(total):
            planned_at = start + index / rate
            delay = planned_at - time.time()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(reported, index, planned_at))
            if on_progress is not None and index % max(int(rate), 1) == 0:
                on_progress(index, total)
        return [future.result() for future in futures]
