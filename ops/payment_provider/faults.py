"""What goes wrong at the provider, switched at run time (`GET/PUT/DELETE /_faults`).

Each POST (a charge or a refund) draws once: the four exclusive faults take
their rates' shares of [0, 1) one after the other, so their rates add up and
may not exceed 1; a decline is drawn apart (only for charges). `seed` makes
the draws reproducible from the moment the faults are set.
"""
import random
import threading
from dataclasses import asdict, dataclass, fields
from enum import Enum
from typing import Any


class Fault(str, Enum):
    NONE = "none"
    ERROR = "error"  # a 502/503 from the edge, nothing charged
    HANG = "hang"  # no answer until the client goes, nothing charged
    RESET_AFTER_CHARGE = "reset_after_charge"  # charged, then the connection is reset
    LATE_ANSWER = "late_answer"  # charged, then the answer comes after late_answer_seconds


@dataclass(frozen=True)
class Faults:
    latency_seconds: float = 0.0
    decline_rate: float = 0.0
    error_rate: float = 0.0
    hang_rate: float = 0.0
    reset_after_charge_rate: float = 0.0
    late_answer_rate: float = 0.0
    late_answer_seconds: float = 0.0
    seed: int | None = None


class InvalidFaults(ValueError):
    pass


RATES = ("decline_rate", "error_rate", "hang_rate", "reset_after_charge_rate", "late_answer_rate")
EXCLUSIVE = (
    ("error_rate", Fault.ERROR),
    ("hang_rate", Fault.HANG),
    ("reset_after_charge_rate", Fault.RESET_AFTER_CHARGE),
    ("late_answer_rate", Fault.LATE_ANSWER),
)


def faults_parse(document: Any) -> Faults:
    """Validate a PUT body (every field optional, the rest default to 0); raise InvalidFaults saying what is wrong."""
    if not isinstance(document, dict):
        raise InvalidFaults("the body must be a JSON object")
    known = {field.name for field in fields(Faults)}
    unknown = sorted(set(document) - known)
    if unknown:
        raise InvalidFaults(f"unknown fields: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for name, value in document.items():
        if name == "seed":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise InvalidFaults("seed must be an integer or null")
            values[name] = value
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidFaults(f"{name} must be a number")
        if name in RATES and not 0.0 <= value <= 1.0:
            raise InvalidFaults(f"{name} must be between 0 and 1")
        if name not in RATES and not 0.0 <= value <= 3600.0:
            raise InvalidFaults(f"{name} must be between 0 and 3600 seconds")
        values[name] = float(value)
    faults = Faults(**values)
    if sum(getattr(faults, name) for name, _ in EXCLUSIVE) > 1.0 + 1e-9:
        raise InvalidFaults("error_rate + hang_rate + reset_after_charge_rate + late_answer_rate must not exceed 1")
    return faults


class FaultSwitch:
    """The faults in force and the random draws they make, shared by the server's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults = Faults()
        self._random = random.Random()

    def current(self) -> Faults:
        with self._lock:
            return self._faults

    def replace(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults
            self._random = random.Random(faults.seed)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self.current())

    def draw(self, *, charge: bool) -> tuple[Faults, Fault, bool]:
        """Decide one request's fate: (faults in force, the exclusive fault, declined)."""
        with self._lock:
            faults = self._faults
            point = self._random.random()
            declined = charge and self._random.random() < faults.decline_rate
        floor = 0.0
        for name, fault in EXCLUSIVE:
            rate = getattr(faults, name)
            if floor <= point < floor + rate:
                return faults, fault, declined
            floor += rate
        return faults, Fault.NONE, declined
