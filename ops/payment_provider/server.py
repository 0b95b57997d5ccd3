"""The provider's HTTP API (Stripe-shaped; JSON; amounts in minor units).

* `POST /v1/charges` (`Idempotency-Key` header; `{"amount", "currency", "metadata"}`):
  200 the charge, or 402 `card_error`/`card_declined` (the failed charge is
  stored under the key too). The same key again: the stored answer again; with
  another amount: 400 `idempotency_error`; while its first request is still
  being handled: 409 `idempotency_key_in_use`.
* `GET /v1/charges?idempotency_key=K`: `{"object": "list", "data": [charge] or []}`.
* `GET /v1/charges?starting_after=ID&limit=N[&status=all]`: charges in creation
  order, ASCENDING (Stripe lists newest first; ascending lets a reader keep a
  watermark and read only what is new), succeeded only unless `status=all`.
* `POST /v1/refunds` (`Idempotency-Key`; `{"charge": ID}`): 200 the refund; a
  charge refunded already: 400 `charge_already_refunded`; unknown: 404.
* `GET /health`; `GET/PUT/DELETE /_faults` (see `faults`); `POST /_seed`
  `{"count", "amount"}` bulk-inserts succeeded charges (for benchmarks).
"""
import json
import logging
import random
import select
import socket
import struct
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ops.payment_provider.faults import Fault, FaultSwitch, InvalidFaults, faults_parse
from ops.payment_provider.store import Answer, Store, error_body

logger = logging.getLogger("payment_provider")

MAX_BODY_BYTES = 64 * 1024
MAX_LIST_LIMIT = 1000
DEFAULT_LIST_LIMIT = 10
MAX_SEED = 5_000_000
# A hung request gives up after this long even if its client never goes, so threads are not held forever.
MAX_HANG_SECONDS = 600.0


class BadRequest(Exception):
    def __init__(self, code: str, message: str, status: int = 400, error_type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.answer = Answer(status, error_body(error_type, code, message))


class ProviderServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], store: Store, switch: FaultSwitch | None = None) -> None:
        self.store = store
        self.switch = switch or FaultSwitch()
        # Keys whose first request is being handled now: a second one gets 409, as at Stripe.
        self.keys_in_use: set[str] = set()
        self.keys_lock = threading.Lock()
        super().__init__(address, ProviderHandler)


class ProviderHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the platform's client pools its connections
    # The headers and the body go out as two writes; with Nagle's algorithm on, the
    # second waits for the client's delayed ACK, about 40 ms on every answer.
    disable_nagle_algorithm = True
    server_version = "PaymentProvider/1"
    server: ProviderServer

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    # Routing -----------------------------------------------------------------

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        routes = {
            "/health": {"GET": self._health},
            "/v1/charges": {"GET": self._charges_list, "POST": self._charge_create},
            "/v1/refunds": {"POST": self._refund_create},
            "/_faults": {"GET": self._faults_show, "PUT": self._faults_replace, "DELETE": self._faults_reset},
            "/_seed": {"POST": self._seed},
        }
        try:
            body = self._body()  # read whatever came, so the connection stays usable whatever is answered
            handlers = routes.get(url.path)
            if handlers is None:
                raise BadRequest("resource_missing", f"Unrecognized request URL ({method}: {url.path})", status=404)
            handler = handlers.get(method)
            if handler is None:
                raise BadRequest("method_not_allowed", f"{method} is not allowed on {url.path}", status=405)
            handler(query=parse_qs(url.query, keep_blank_values=True), body=body)
        except BadRequest as error:
            self._send(error.answer)

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            self.close_connection = True
            raise BadRequest("invalid_content_length", "Content-Length must be an integer") from None
        if not 0 <= size <= MAX_BODY_BYTES:
            self.close_connection = True
            raise BadRequest("body_too_large", f"the body must be at most {MAX_BODY_BYTES} bytes", status=413)
        return self.rfile.read(size)

    @staticmethod
    def _json(body: bytes) -> dict[str, Any]:
        try:
            document = json.loads(body or b"{}")
        except ValueError:
            raise BadRequest("parameter_invalid", "the body is not valid JSON") from None
        if not isinstance(document, dict):
            raise BadRequest("parameter_invalid", "the body must be a JSON object")
        return document

    def _idempotency_key(self) -> str:
        key = self.headers.get("Idempotency-Key", "")
        if not 0 < len(key) <= 255:
            raise BadRequest("parameter_missing", "an Idempotency-Key header of 1 to 255 characters is required")
        return key

    # Answers -----------------------------------------------------------------

    def _send(self, answer: Answer) -> None:
        data = json.dumps(answer.body).encode()
        self._send_bytes(answer.status, data, "application/json")

    def _send_bytes(self, status: int, data: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client went while we answered (a late answer, typically)
            self.close_connection = True

    def _send_edge_error(self) -> None:
        # What a proxy in front of a provider answers: not the provider's JSON.
        status = random.choice((HTTPStatus.BAD_GATEWAY, HTTPStatus.SERVICE_UNAVAILABLE))
        self._send_bytes(status, f"{status.value} {status.phrase}\n".encode(), "text/plain")

    def _reset(self) -> None:
        """Drop the connection with a TCP reset, answering nothing (SO_LINGER 0, then close)."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()
        self.rfile.close()  # the socket's last reference: the real close happens here, and with it the RST

    def _hang(self, seconds: float) -> None:
        """Answer nothing until the client closes its end (or `seconds` pass), then close ours."""
        self.close_connection = True
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.connection], [], [], 0.2)
            if not readable:
                continue
            try:
                if not self.connection.recv(1, socket.MSG_PEEK):
                    return  # the client closed
            except OSError:
                return  # the client reset
            return  # the client sent another request on a connection still waiting for an answer: give up on it

    def _with_faults(self, *, key: str, charge: bool, handle: Any) -> None:
        """Run a POST under the faults in force, its idempotency key in use from handling to answering.

        The latency comes before handling (the request waits, as in a queue or
        on the network), so a slow provider is slow for a retry too. A late
        answer keeps the key in use until it is written, as a request still in
        flight does at Stripe: a retry meanwhile gets 409.
        """
        faults, fault, declined = self.server.switch.draw(charge=charge)
        if faults.latency_seconds:
            time.sleep(faults.latency_seconds)
        if fault is Fault.ERROR:
            self._send_edge_error()
            return
        if fault is Fault.HANG:
            self._hang(MAX_HANG_SECONDS)
            return
        with self.server.keys_lock:
            if key in self.server.keys_in_use:
                raise BadRequest(
                    "idempotency_key_in_use",
                    "There is currently another in-progress request using this Idempotency-Key; retry later.",
                    status=409,
                    error_type="idempotency_error",
                )
            self.server.keys_in_use.add(key)
        try:
            answer = handle(declined)
            if fault is Fault.RESET_AFTER_CHARGE:
                self._reset()
                return
            if fault is Fault.LATE_ANSWER:
                time.sleep(faults.late_answer_seconds)
            self._send(answer)
        finally:
            with self.server.keys_lock:
                self.server.keys_in_use.discard(key)

    # Endpoints ---------------------------------------------------------------

    def _health(self, **_: Any) -> None:
        self.server.store.ping()
        self._send(Answer(200, {"status": "ok"}))

    def _charge_create(self, *, body: bytes, **_: Any) -> None:
        key = self._idempotency_key()
        document = self._json(body)
        amount = document.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise BadRequest("parameter_invalid_integer", "amount must be a positive integer (minor units)")
        currency = document.get("currency")
        if not isinstance(currency, str) or len(currency) != 3:
            raise BadRequest("parameter_invalid", "currency must be a three-letter ISO code")
        metadata = document.get("metadata", {})
        if not isinstance(metadata, dict):
            raise BadRequest("parameter_invalid", "metadata must be an object")

        def handle(declined: bool) -> Answer:
            stored_amount, answer = self.server.store.charge_create(
                idempotency_key=key, amount=amount, currency=currency.lower(), metadata=metadata, approved=not declined
            )
            if stored_amount != amount:
                return Answer(400, error_body(
                    "idempotency_error", "idempotency_key_reused",
                    "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                ))  # fmt: skip
            return answer

        self._with_faults(key=key, charge=True, handle=handle)

    def _charges_list(self, *, query: dict[str, list[str]], **_: Any) -> None:
        if "idempotency_key" in query:
            charge = self.server.store.charge_by_key(query["idempotency_key"][0])
            self._send(Answer(200, {"object": "list", "data": [] if charge is None else [charge], "has_more": False}))
            return
        try:
            limit = int(query.get("limit", [str(DEFAULT_LIST_LIMIT)])[0])
        except ValueError:
            raise BadRequest("parameter_invalid_integer", "limit must be an integer") from None
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise BadRequest("parameter_invalid_integer", f"limit must be between 1 and {MAX_LIST_LIMIT}")
        status = query.get("status", ["succeeded"])[0]
        if status not in ("succeeded", "all"):
            raise BadRequest("parameter_invalid", "status must be succeeded or all")
        starting_after = query.get("starting_after", [""])[0] or None
        page = self.server.store.charges_after(starting_after=starting_after, limit=limit, include_failed=status == "all")
        if page is None:
            raise BadRequest("resource_missing", f"No such charge: {starting_after}")
        charges, has_more = page
        self._send(Answer(200, {"object": "list", "data": charges, "has_more": has_more}))

    def _refund_create(self, *, body: bytes, **_: Any) -> None:
        key = self._idempotency_key()
        charge_id = self._json(body).get("charge")
        if not isinstance(charge_id, str) or not charge_id:
            raise BadRequest("parameter_missing", "charge is required")
        self._with_faults(
            key=key, charge=False, handle=lambda _: self.server.store.refund_create(idempotency_key=key, charge_id=charge_id)
        )

    def _faults_show(self, **_: Any) -> None:
        self._send(Answer(200, self.server.switch.as_dict()))

    def _faults_replace(self, *, body: bytes, **_: Any) -> None:
        try:
            faults = faults_parse(self._json(body))
        except InvalidFaults as error:
            raise BadRequest("parameter_invalid", str(error)) from None
        self.server.switch.replace(faults)
        self._send(Answer(200, self.server.switch.as_dict()))

    def _faults_reset(self, **_: Any) -> None:
        self.server.switch.replace(faults_parse({}))
        self._send(Answer(200, self.server.switch.as_dict()))

    def _seed(self, *, body: bytes, **_: Any) -> None:
        document = self._json(body)
        count, amount = document.get("count"), document.get("amount", 1000)
        for name, value, highest in (("count", count, MAX_SEED), ("amount", amount, 10**12)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= highest:
                raise BadRequest("parameter_invalid_integer", f"{name} must be an integer from 1 to {highest}")
        started = time.monotonic()
        total = self.server.store.seed(count=count, amount=amount)
        self._send(Answer(200, {"seeded": count, "total": total, "seconds": round(time.monotonic() - started, 3)}))
