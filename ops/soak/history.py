"""The soak's history: every client request with its outcome, every fault with when it held, samples of the platform.

One JSON object a line (`history.jsonl`), appended and flushed as it
happens, so a soak that is itself killed still leaves what it did. The
checker and the timeline read the run only from here and from the
read-backs (`ops.soak.readback`): `history_load` is their way in.

A request's outcome is what its client knows:

* acknowledged: a 2xx answer; the platform says it is done;
* refused: a definite no that did nothing: a 4xx (409, 422, 429, an illegal
  cancel) or the load shedder's 503, which answers before any work;
* timed out: no definite answer: the client's time limit, a broken
  connection, or any other 5xx (a database that crashed during the commit
  may have committed it). Such a request did its work zero times or once.
"""
import json
import threading
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any


class Outcome(str, Enum):
    ACKNOWLEDGED = "acknowledged"
    REFUSED = "refused"
    TIMED_OUT = "timed_out"


class Operation(str, Enum):
    CART = "cart"  # the item added to the customer's fresh cart before the checkout
    CHECKOUT = "checkout"
    CANCEL = "cancel"


@dataclass(frozen=True)
class RequestRecord:
    operation: str
    key: str  # the checkout's Idempotency-Key, which also names its customer (a cancel carries its checkout's)
    attempt: int  # 1, then 2, 3... for requests sent again with the same key
    sent_at: float
    finished_at: float
    outcome: str
    status: int | None = None
    order_number: str | None = None
    detail: str = ""  # the problem type, or the client error's class
    replayed: bool = False  # Idempotent-Replayed: true


@dataclass(frozen=True)
class FaultRecord:
    name: str
    planned_at: float  # seconds after the run started
    planned_seconds: float  # how long it was to be held (0: an action)
    started_at: float  # unix time its injection began
    healed_at: float | None  # unix time it was undone
    injected: bool = True  # False: its injection failed (the error says how far it got)
    error: str = ""
    facts: dict[str, Any] = field(default_factory=dict)  # what the fault noted: the poison it sent, the pid it froze


@dataclass(frozen=True)
class Sample:
    at: float
    outbox_pending: int | None  # None: the source could not be read (it may be the fault)
    consumer_lag: int | None


@dataclass(frozen=True)
class RunRecord:
    seed: int
    rate: float
    minutes: float
    started_at: float
    load_seconds: float
    quiet_seconds: float
    settle_within_seconds: float  # the bound the certificate states
    key_prefix: str  # every key (and customer) of the run starts with it
    customer_domain: str
    fault_kinds: list[str]
    excluded_kinds: dict[str, str]  # kind -> why it was left out on this platform
    schedule: list[dict[str, Any]]
    stock_before: dict[str, int]
    command: str = ""  # how to run it again


@dataclass(frozen=True)
class RunEnd:
    load_ended_at: float
    last_healed_at: float | None
    settled_at: float | None  # when the platform was seen quiescent (None: not within the bound)
    interrupted: bool = False


_KINDS: dict[str, type] = {"run": RunRecord, "request": RequestRecord, "fault": FaultRecord, "sample": Sample, "end": RunEnd}
_NAMES = {kind: name for name, kind in _KINDS.items()}


class History:
    """The writer: thread-safe, one flushed line per record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file = path.open("a", encoding="utf-8")

    def record(self, item: RunRecord | RequestRecord | FaultRecord | Sample | RunEnd) -> None:
        line = json.dumps({"kind": _NAMES[type(item)], **asdict(item)}, default=str)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


@dataclass
class HistoryData:
    run: RunRecord
    requests: list[RequestRecord] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    end: RunEnd | None = None

    def of(self, operation: Operation) -> list[RequestRecord]:
        return [request for request in self.requests if request.operation == operation.value]

    @property
    def last_healed_at(self) -> float | None:
        healed = [fault.healed_at for fault in self.faults if fault.healed_at is not None]
        return max(healed, default=None)


def spans_overlapping(spans: list[tuple[float, float]]) -> int:
    """How many of the (start, end) spans overlap at least one other."""
    return sum(
        1
        for index, (start, end) in enumerate(spans)
        if any(other_start < end and start < other_end for other, (other_start, other_end) in enumerate(spans) if other != index)
    )


def history_load(path: Path) -> HistoryData:
    """Read a history file back (a line cut short by a crash of the soak itself is skipped)."""
    run: RunRecord | None = None
    data: dict[str, list] = {"request": [], "fault": [], "sample": []}
    end: RunEnd | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            fields = json.loads(line)
        except ValueError:
            continue
        kind = fields.pop("kind", None)
        if kind not in _KINDS:
            continue
        item = _KINDS[kind](**fields)
        if kind == "run":
            run = item
        elif kind == "end":
            end = item
        else:
            data[kind].append(item)
    if run is None:
        raise ValueError(f"{path} has no run record: not a soak history")
    return HistoryData(run=run, requests=data["request"], faults=data["fault"], samples=data["sample"], end=end)
