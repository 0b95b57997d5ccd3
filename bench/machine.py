"""What a bench's figures were measured on: the machine, its load, and a fixed piece of CPU work timed on it.

The machine is shared (other developers' platforms, benches and test
suites), so a wall-clock figure means little without the load beside it.
The calibration times the same single-core work on every run (hashing and a
pure-Python loop, no I/O): a figure divided by it compares across machines
and across busy and quiet moments better than the raw seconds do.
"""
import hashlib
import os
import statistics
import time
from dataclasses import dataclass

# The work of one calibration unit: some tens of milliseconds on a current core.
HASHED_BYTES = 16 * 1024 * 1024
LOOP_ITERATIONS = 1_000_000
RUNS = 5


@dataclass(frozen=True)
class Machine:
    cpus: int
    load: tuple[float, float, float]  # 1, 5 and 15 minute load averages
    unit_seconds: float  # median time of one calibration unit

    def describe(self) -> str:
        return (
            f"machine: {self.cpus} CPUs, load average {self.load[0]:.2f} / {self.load[1]:.2f} / {self.load[2]:.2f} (1/5/15 min); "
            f"calibration unit (sha256 of {HASHED_BYTES >> 20} MiB + {LOOP_ITERATIONS:,} Python loop steps, "
            f"median of {RUNS}) {self.unit_seconds * 1000:.0f} ms"
        )


def _unit() -> float:
    data = b"\x5a" * HASHED_BYTES
    started = time.perf_counter()
    hashlib.sha256(data).digest()
    total = 0
    for step in range(LOOP_ITERATIONS):
        total += step & 7
    return time.perf_counter() - started


def machine_measure() -> Machine:
    """Time the calibration unit and read the load average now."""
    unit_seconds = statistics.median(_unit() for _ in range(RUNS))
    return Machine(cpus=os.cpu_count() or 1, load=os.getloadavg(), unit_seconds=unit_seconds)
