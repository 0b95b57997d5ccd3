"""Start a checkout's whole platform for a bench, and stop it whatever happens.

A/B benches judge two versions in one run on the same machine state: each
checkout's own `scripts/run.sh` starts its platform (its own database, so the
two never share a schema, and the same ports, one after the other), the bench
measures it, and the platform is stopped before the next one starts.
"""
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import requests

# The PostgreSQL server every bench platform's database lives on (run.sh's default).
POSTGRES_SERVER = "postgres://postgres@127.0.0.1:5432"
READY_TIMEOUT_SECONDS = 600  # a first run.sh installs its virtualenv and migrates
STOP_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class StartedPlatform:
    checkout: Path
    label: str
    base_url: str
    database: str
    env: dict[str, str]

    @property
    def run_dir(self) -> Path:
        return self.checkout / ".run"

    def manage(self, *arguments: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run `manage.py` in the checkout with the platform's environment; exit on failure."""
        done = subprocess.run(
            [str(self.checkout / ".venv/bin/python"), "manage.py", *arguments],
            cwd=self.checkout, env=self.env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"{self.label}: manage.py {' '.join(arguments)} failed: {done.stderr.strip()[-400:]}")
        return done


def platform_env(database: str, *, web_port: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PROMETHEUS_MULTIPROC_DIR", "VIRTUAL_ENV")}
    env.update(
        DATABASE_URL=f"{POSTGRES_SERVER}/{database}",
        WEB_PORT=str(web_port),
        # A bench measures capacity, not the per-client checkout limit.
        THROTTLE_CHECKOUT_CLIENT_RATE="1000000/min",
    )
    return env


def _database_dropped(database: str) -> None:
    """Drop the bench's own platform database, so every version starts from the same empty schema.

    A database left by another version's run would carry that version's
    migrations (which this one may not know) and its orders.
    """
    import psycopg2
    from psycopg2 import sql

    admin = psycopg2.connect(f"{POSTGRES_SERVER}/postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
    admin.close()


def _wait_ready(base_url: str, runner: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if runner.poll() is not None:
            raise SystemExit(f"run.sh exited ({runner.returncode}) before the platform was ready")
        try:
            if requests.get(f"{base_url}/health/ready", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(2)
    raise SystemExit(f"the platform at {base_url} was not ready within {READY_TIMEOUT_SECONDS} s")


@contextmanager
def platform_started(checkout: Path, label: str, *, web_port: int, log_dir: Path) -> Iterator[StartedPlatform]:
    """Start `checkout`'s platform with `scripts/run.sh`, yield it once ready, stop it (SIGTERM, then SIGKILL)."""
    database = f"ecommerce_bench_{label}"
    env = platform_env(database, web_port=web_port)
    base_url = f"http://127.0.0.1:{web_port}"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"bench-platform-{label}.log"
    _database_dropped(database)
    # A bench stopped with SIGTERM (kill, a timeout) must stop the platform it
    # started too: Python's default for SIGTERM ends the process without
    # running the `finally` below, and the platform would hold the ports.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    print(f"{label}: starting {checkout}/scripts/run.sh (log {log_path})", file=sys.stderr, flush=True)
    with log_path.open("w") as log:
        runner = subprocess.Popen(
            ["bash", "scripts/run.sh"], cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            _wait_ready(base_url, runner)
            yield StartedPlatform(checkout=checkout, label=label, base_url=base_url, database=database, env=env)
        finally:
            print(f"{label}: stopping", file=sys.stderr, flush=True)
            with suppress(ProcessLookupError):  # run.sh may have exited already, its whole group with it
                os.killpg(runner.pid, signal.SIGTERM)
            try:
                runner.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(runner.pid, signal.SIGKILL)
                runner.wait()
