"""The soak's customers: an open-loop checkout load with retries, replays and cancels, every request in the history.

Open loop, as `bench.load`: customer i arrives at start + i / rate whatever
the earlier ones are doing. Each adds one product to a cart of their own,
then checks out with an `Idempotency-Key`; the key also names the customer
(`KEY@soak.invalid`), which is how the checker finds a key's orders. What
each customer does beyond that is drawn from the seed and their number, so
a rerun makes the same choices:

* a checkout without a definite answer (a time-out, a broken connection, a
  5xx) or refused for the moment (shed, throttled, the same key in flight) is
  sent again with the same key by a share of the customers, up to 3 tries,
  after the `Retry-After` or a second per try;
* a share sends an acknowledged checkout again (a client that did not see
  the answer): the platform must answer the same order, replayed;
* a share has the order cancelled by the manager API a moment later (409 if
  it was already paid: refused, and then it must not end CANCELLED).

HTTP only, to loopback only (`bench.load.loopback_only`).
"""
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

from bench.load import API, CUSTOMER, loopback_only
from ops.soak.history import History, Operation, Outcome, RequestRecord

CUSTOMER_DOMAIN = "soak.invalid"
SHED_PROBLEM = "overloaded"
CANCEL_REASON = "soak: the customer changed their mind"


@dataclass(frozen=True)
class WorkloadMix:
    retry_share: float = 0.6  # of customers whose checkout got no definite answer or a passing refusal
    max_attempts: int = 3
    replay_share: float = 0.03  # of acknowledged checkouts
    cancel_share: float = 0.05  # of acknowledged checkouts
    cancel_within_seconds: float = 2.0


class ManagerSession:
    """The manager's token for cancels, logged in again when it expires (a long soak outlives one)."""

    def __init__(self, base_url: str, *, username: str, password: str, timeout_seconds: float) -> None:
        self.base_url, self.username, self.password, self.timeout = base_url, username, password, timeout_seconds
        self._token: str | None = None
        self._lock = threading.Lock()

    def token(self, *, renew: bool = False) -> str:
        with self._lock:
            if self._token is None or renew:
                answer = requests.post(
                    f"{self.base_url}{API}/auth/login", json={"username": self.username, "password": self.password}, timeout=self.timeout
                )
                answer.raise_for_status()
                self._token = answer.json()["accessToken"]
            return self._token


@dataclass
class Tally:
    """Per customer, their checkout's final outcome: what the progress line shows."""

    offered: int = 0
    acknowledged: int = 0
    refused: int = 0
    timed_out: int = 0
    requests: int = 0


def outcome_of(answer: requests.Response) -> tuple[Outcome, str]:
    """An answer's outcome and its problem type (see ops.soak.history)."""
    problem = ""
    if answer.headers.get("Content-Type", "").startswith("application/problem+json"):
        try:
            problem = str(answer.json().get("type", "")).rpartition("/")[2]
        except ValueError:
            problem = "unreadable problem"
    if answer.status_code < 300:
        return Outcome.ACKNOWLEDGED, problem
    if answer.status_code < 500 or (answer.status_code == 503 and problem == SHED_PROBLEM):
        return Outcome.REFUSED, problem
    return Outcome.TIMED_OUT, problem or f"HTTP {answer.status_code}"


class Workload:
    def __init__(
        self,
        *,
        base_url: str,
        products: Sequence[dict],
        rate: float,
        duration_seconds: float,
        seed: int,
        key_prefix: str,
        history: History,
        manager: ManagerSession,
        timeout_seconds: float = 10.0,
        concurrency: int = 200,
        mix: WorkloadMix = WorkloadMix(),
    ) -> None:
        loopback_only(base_url)
        self.base_url, self.products, self.rate, self.duration = base_url, list(products), rate, duration_seconds
        self.seed, self.key_prefix, self.history, self.manager = seed, key_prefix, history, manager
        self.timeout, self.concurrency, self.mix = timeout_seconds, concurrency, mix
        self.tally = Tally()
        self._lock = threading.Lock()
        self._local = threading.local()

    @property
    def total(self) -> int:
        return max(int(self.rate * self.duration), 1)

    def run(self, stop: threading.Event) -> None:
        """Offer every customer at their time (until `stop`), and wait for those started to finish."""
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="soak-customer") as pool:
            start = time.time() + 0.2
            for index in range(self.total):
                if stop.wait(max(start + index / self.rate - time.time(), 0)):
                    break
                with self._lock:
                    self.tally.offered += 1
                pool.submit(self._customer, index)

    # --- one customer ----------------------------------------------------------------

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            session = requests.Session()
            session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=2, max_retries=0))
            self._local.session = session
        return self._local.session

    def _send(
        self, operation: Operation, key: str, attempt: int, method: str, path: str, *, order_number: str | None = None, **arguments
    ) -> tuple[RequestRecord, requests.Response | None]:
        """Send one request and record it; `order_number` names a cancel's order whatever the answer."""
        sent_at = time.time()
        answer = None
        try:
            answer = self._session().request(method, f"{self.base_url}{API}{path}", timeout=self.timeout, **arguments)
            outcome, detail = outcome_of(answer)
        except requests.RequestException as error:
            outcome, detail = Outcome.TIMED_OUT, type(error).__name__
        if answer is not None and outcome == Outcome.ACKNOWLEDGED and operation == Operation.CHECKOUT:
            try:
                order_number = answer.json().get("orderNumber")
            except ValueError:
                detail = "unreadable answer"
        record = RequestRecord(
            operation=operation.value, key=key, attempt=attempt, sent_at=sent_at, finished_at=time.time(), outcome=outcome.value,
            status=answer.status_code if answer is not None else None, order_number=order_number, detail=detail,
            replayed=answer is not None and answer.headers.get("Idempotent-Replayed") == "true",
        )  # fmt: skip
        self.history.record(record)
        with self._lock:
            self.tally.requests += 1
        return record, answer

    def _retry_wait(self, answer: requests.Response | None, attempt: int) -> float:
        try:
            return float(answer.headers.get("Retry-After", attempt)) if answer is not None else float(attempt)
        except ValueError:
            return float(attempt)

    @staticmethod
    def _retryable(record: RequestRecord) -> bool:
        if record.outcome == Outcome.TIMED_OUT.value:
            return True
        # Refusals that pass: shed, throttled, the same key still in flight.
        return record.outcome == Outcome.REFUSED.value and record.status in (409, 429, 503) and record.detail != "illegal-transition"

    def _customer(self, index: int) -> None:
        choices = random.Random(f"{self.seed}:{index}")
        retries = choices.random() < self.mix.retry_share
        replay = choices.random() < self.mix.replay_share
        cancel = choices.random() < self.mix.cancel_share
        cancel_after = choices.uniform(0, self.mix.cancel_within_seconds)
        key = f"{self.key_prefix}-{index:06d}"
        product = self.products[index % len(self.products)]
        final = self._checkout(key, product, retries=retries)
        with self._lock:
            setattr(self.tally, final.outcome, getattr(self.tally, final.outcome) + 1)
        if final.outcome != Outcome.ACKNOWLEDGED.value:
            return
        if replay:
            self._checkout_send(key, final.attempt + 1)
        if cancel and final.order_number:
            time.sleep(cancel_after)
            self._cancel(key, final.order_number)

    def _checkout(self, key: str, product: dict, *, retries: bool) -> RequestRecord:
        attempts = self.mix.max_attempts if retries else 1
        for attempt in range(1, attempts + 1):
            record, answer = self._send(
                Operation.CART, key, attempt, "POST", f"/carts/{key}/items", json={"productId": product["id"], "quantity": 1}
            )
            if record.outcome == Outcome.ACKNOWLEDGED.value:
                break
            if attempt == attempts or not self._retryable(record):
                return record  # the customer leaves with nothing in the cart: no checkout was sent
            time.sleep(self._retry_wait(answer, attempt))
        for attempt in range(1, attempts + 1):
            record, answer = self._checkout_send(key, attempt)
            if record.outcome == Outcome.ACKNOWLEDGED.value or attempt == attempts or not self._retryable(record):
                return record
            time.sleep(self._retry_wait(answer, attempt))
        return record

    def _checkout_send(self, key: str, attempt: int) -> tuple[RequestRecord, requests.Response | None]:
        customer = {**CUSTOMER, "name": "Soak Customer", "email": f"{key}@{CUSTOMER_DOMAIN}"}
        return self._send(
            Operation.CHECKOUT, key, attempt, "POST", "/checkout",
            json={"sessionId": key, "customerInfo": customer},
            headers={"Idempotency-Key": key, "X-Correlation-ID": f"{key}-{attempt}"},
        )  # fmt: skip

    def _cancel(self, key: str, order_number: str) -> None:
        try:
            token = self.manager.token()
        except requests.RequestException:
            return  # no cancel sent: nothing to record
        _, answer = self._send(
            Operation.CANCEL, key, 1, "POST", f"/orders/{order_number}/cancel", order_number=order_number,
            json={"reason": CANCEL_REASON}, headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
        if answer is not None and answer.status_code == 401:  # the token expired: log in again, once
            try:
                token = self.manager.token(renew=True)
            except requests.RequestException:
                return
            self._send(
                Operation.CANCEL, key, 2, "POST", f"/orders/{order_number}/cancel", order_number=order_number,
                json={"reason": CANCEL_REASON}, headers={"Authorization": f"Bearer {token}"},
            )  # fmt: skip
