"""Load shedding: a saturated web tier refuses API requests fast with 503 and `Retry-After`.

Without it, an offer above capacity queues: gunicorn's threaded workers
accept no more connections than they have threads (gunicorn.conf.py), so the
excess waits in the kernel's listen backlog, every request's wait grows with
the backlog, clients time out, and the server keeps working for clients that
have already given up: goodput falls far below capacity (issue 10 measured
17.7/s offered 100/s, against 32/s sustained).

The mechanism is a per-process limit on API requests in flight, below the
thread count. Alternatives considered:

* a queue-time budget (refuse a request that waited longer than N ms before
  a thread took it) needs the time the connection arrived. With gthread that
  wait happens in the kernel backlog, which no application code can see or
  time; gunicorn stamps nothing at accept, and letting a worker accept more
  connections than threads (so the wait moves into its thread pool's queue)
  brings back the slow-client starvation gunicorn.conf.py closes. Behind
  nginx an `X-Request-Start` stamp would work; the run command has no proxy.
* more processes or threads do not add capacity on a CPU-bound tier: they
  only lengthen the queue inside it.

With at most `WEB_SHED_MAX_IN_FLIGHT` API requests working per process, the
remaining threads stay free to refuse the excess, to answer the health
probes and /metrics (never shed: they sit outside `/api/`, and an
orchestrator or Prometheus that gets 503 while the platform works would
restart or page for nothing), and the backlog drains as fast as requests
arrive. The API requests admitted run with the CPU to themselves, so goodput
stays at capacity. The limit is a count, not a rate: it needs no tuning to
the machine's speed, only to roughly how many requests keep the CPU and
database busy (a few per process; see .env.example).

A request that finds every slot taken waits for one, briefly: at most
`WEB_SHED_QUEUE_SECONDS`, and only `WEB_SHED_MAX_QUEUED` requests per process
wait at once (the next is refused at once), so the threads left over stay
free for the probes. A platform below its capacity still has stalls (on a
shared disk, commits that wait a few hundred ms for their flush) that hold
one process's slots while requests keep arriving. Refused at once, those
requests were 503s at rates the platform otherwise served, checkout p99 and
paid rate within bounds (README, "Capacity", the runs before the queue).
Waiting, they are served a little late. Past capacity the queue stays full,
and the excess is refused as before.

This is the concurrency limiter with a bounded, timed queue of Netflix's
concurrency-limits and Envoy's admission control, in a few lines over
`threading.Condition`: neither exists for Django, and a WSGI process needs
no more than a count and a wait.

A refused checkout is safe to retry: the client sends the same
`Idempotency-Key`, and no work was done for it. `Retry-After` tells it when.
"""
import threading
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.http.request import UnreadablePostError
from django.urls import reverse
from prometheus_client import Counter

from core.problems import API_PREFIX, BODY_NOT_RECEIVED, problem_response

# A shed request never reaches django-prometheus' after-middleware, so its
# responses-by-status counter does not see it: this one does.
HTTP_REQUESTS_SHED = Counter("http_requests_shed", "API requests refused with 503 by load shedding.")
HTTP_REQUESTS_QUEUED = Counter(
    "http_requests_queued", "API requests admitted by load shedding after waiting for a slot (at most WEB_SHED_QUEUE_SECONDS)."
)


class LoadSheddingMiddleware:
    """Refuse API requests beyond the per-process in-flight limit, after a bounded wait, with a 503 problem.

    `POST /checkout` may take every slot; other API requests (a cart add,
    a catalog read) leave the last one free for it. Under overload a
    customer whose cart is built gets to finish, rather than the slot going
    to the next customer's first step: a checkout refused after its cart add
    was served wastes that cart add's work.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        # One per process (gunicorn builds the middleware chain once per
        # worker), shared by its threads.
        self.limit = settings.WEB_SHED_MAX_IN_FLIGHT
        self.queue_seconds = settings.WEB_SHED_QUEUE_SECONDS
        self.max_queued = settings.WEB_SHED_MAX_QUEUED
        self.in_flight = 0
        self.queued = 0
        self.slots = threading.Condition()
        self.retry_after = str(settings.WEB_SHED_RETRY_AFTER_SECONDS)
        self.checkout_path = reverse("checkout")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        # A slot is for work, not for waiting on a slow client's upload: the
        # body is received first (bounded by the read timeout and size limit).
        if (unreceived := _receive(request)) is not None:
            return unreceived
        finishes = request.method == "POST" and request.path == self.checkout_path
        if not self._admit(self.limit if finishes else self.limit - 1):
            return self._refuse(request)
        try:
            return self.get_response(request)
        finally:
            with self.slots:
                self.in_flight -= 1
                # Every waiter re-checks: a freed last slot is a checkout's only.
                self.slots.notify_all()

    def _admit(self, limit: int) -> bool:
        """Take a slot below `limit`, waiting up to the queue time if none is free and the queue has room."""
        with self.slots:
            if self.in_flight < limit:
                self.in_flight += 1
                return True
            if self.queued >= self.max_queued:
                return False
            self.queued += 1
            try:
                admitted = self.slots.wait_for(lambda: self.in_flight < limit, timeout=self.queue_seconds)
            finally:
                self.queued -= 1
            if admitted:
                self.in_flight += 1
                HTTP_REQUESTS_QUEUED.inc()
            return admitted

    def _refuse(self, request: HttpRequest) -> HttpResponse:
        HTTP_REQUESTS_SHED.inc()
        response = problem_response(
            status_code=503,
            detail="The server is at capacity; retry after the time in Retry-After (a checkout with the same Idempotency-Key).",
            problem_type="overloaded",
        )
        response["Retry-After"] = self.retry_after
        return response


def _receive(request: HttpRequest) -> HttpResponse | None:
    """Read the request's body now; answer 408 if the client stops sending it.

    A body over the size limit is not read (Django refuses before reading):
    the parser answers 413 later, as for any request.
    """
    try:
        request.body  # noqa: B018 (read for its side effect: Django keeps it)
    except RequestDataTooBig:
        return None
    except UnreadablePostError:
        return problem_response(status_code=408, detail=BODY_NOT_RECEIVED)
    return None
