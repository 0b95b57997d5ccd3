"""The machine's own speed and load, printed beside every absolute figure a bench gives.

A figure measured on a shared machine means little alone: the same platform is
slower on a slower or busier machine. So each bench measures, in the same
run, a fixed pure-Python CPU loop (best of 9 runs, seconds: lower is faster)
and PostgreSQL's built-in TPC-B-like write test (`pgbench`, one client, in a
scratch database: transactions/s), and reads the load average. A reader on
another machine compares those first.

    from bench.calibration import calibration_measure
    print(calibration_measure().line())
"""
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlparse

# The loop the project's acceptance figures are calibrated with: sum(i*i for i in range(3_000_000)).
LOOP_N = 3_000_000
LOOP_RUNS = 9


@dataclass(frozen=True)
class Calibration:
    python_loop_seconds: float
    pgbench_tps: float | None  # None where pgbench is missing or the server refused
    load_average: tuple[float, float, float]
    cpus: int

    def line(self) -> str:
        tps = f"{self.pgbench_tps:.0f}" if self.pgbench_tps is not None else "n/a"
        load = " ".join(f"{value:.2f}" for value in self.load_average)
        return (
            f"calibration: python_loop_s={self.python_loop_seconds:.3f} (best of {LOOP_RUNS}) "
            f"pgbench_tpcb_1client_tps={tps} load={load} cpus={self.cpus}"
        )

    def as_dict(self) -> dict:
        return asdict(self)


def python_loop_seconds(runs: int = LOOP_RUNS) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        sum(i * i for i in range(LOOP_N))
        best = min(best, time.perf_counter() - started)
    return best


def pgbench_tps(database_url: str, *, seconds: int = 10) -> float | None:
    """One client's TPC-B-like transactions/s in a scratch database on the server of `database_url`."""
    if not shutil.which("pgbench"):
        return None
    url = urlparse(database_url)
    connection = ["-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "postgres"]
    environment = {**os.environ, **({"PGPASSWORD": url.password} if url.password else {})}
    scratch = f"calibration_{os.getpid()}"

    def run(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run(arguments, env=environment, capture_output=True, text=True, timeout=seconds + 120)

    try:
        if run("createdb", *connection, scratch).returncode != 0:
            return None
        if run("pgbench", *connection, "-i", "-s", "1", "-q", scratch).returncode != 0:
            return None
        done = run("pgbench", *connection, "-c", "1", "-T", str(seconds), scratch)
        found = re.search(r"^tps = ([0-9.]+)", done.stdout, re.MULTILINE)
        return float(found.group(1)) if found else None
    finally:
        run("dropdb", *connection, "--if-exists", scratch)


def calibration_measure(database_url: str | None = None) -> Calibration:
    url = database_url or os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ecommerce")
    return Calibration(
        python_loop_seconds=python_loop_seconds(),
        pgbench_tps=pgbench_tps(url),
        load_average=os.getloadavg(),
        cpus=os.cpu_count() or 1,
    )


if __name__ == "__main__":
    print(calibration_measure().line())
