"""The run command's supervisor: a platform process that dies is restarted and counted.

Runs the real supervisord with the repository's own program definitions
(the fake payment provider, consumer, Celery worker, event listener) against
the test services, and kills the real processes.
"""
import http.client
import os
import signal
import subprocess
import sys
import xmlrpc.client
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from supervisor.xmlrpc import SupervisorTransport

from ecommerce.metrics import ProcessFilesCollector
from tests.support import ROOT, free_port, platform_process_env, wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(240)]

PROGRAMS = ROOT / "ops" / "supervisor" / "programs"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it no longer runs anything.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(line) for line in out.split()]


class Supervisor:
    def __init__(self, run_dir: Path, env: dict[str, str], programs: list[str]) -> None:
        self.run_dir = run_dir
        (run_dir / "logs").mkdir()
        self.config = run_dir / "supervisord.conf"
        main = (ROOT / "ops" / "supervisor" / "supervisord.conf").read_text()
        included = " ".join(str(PROGRAMS / f"{name}.conf") for name in programs)
        self.config.write_text(main.replace("files = programs/*.conf", f"files = {included}"))
        self.env = env
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.config)],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def info(self, name: str) -> dict:
        # A fresh connection per call: one that failed (socket not there yet) cannot be reused.
        rpc = xmlrpc.client.ServerProxy(
            "http://127.0.0.1", transport=SupervisorTransport(None, None, f"unix://{self.run_dir}/supervisor.sock")
        )
        try:
            return rpc.supervisor.getProcessInfo(name)
        except (OSError, http.client.HTTPException, xmlrpc.client.Fault):
            return {}

    def running(self, name: str, *, not_pid: int = 0) -> int:
        info = self.info(name)
        return info["pid"] if info.get("statename") == "RUNNING" and info["pid"] != not_pid else 0

    def stop(self, sig: int = signal.SIGINT) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise


def restarts(multiproc_dir: Path) -> dict[str, float]:
    registry = CollectorRegistry()
    ProcessFilesCollector(registry, path=str(multiproc_dir))
    return {
        sample.labels["process"]: sample.value
        for family in registry.collect()
        if family.name == "platform_process_restarts"
        for sample in family.samples
        if sample.name == "platform_process_restarts_total"
    }


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1.0).json() == {"status": "ok"}
    except (httpx.HTTPError, ValueError):
        return False


@pytest.fixture
def supervisor(tmp_path, broker):
    multiproc_dir = tmp_path / "prometheus"
    multiproc_dir.mkdir()
    provider_port = free_port()
    provider_url = f"http://127.0.0.1:{provider_port}"
    env = platform_process_env(
        PLATFORM_ROOT=str(ROOT),
        RUN_DIR=str(tmp_path),
        PYTHON=sys.executable,
        PROMETHEUS_MULTIPROC_DIR=str(multiproc_dir),
        LOG_LEVEL="INFO",
        PAYMENT_PROVIDER_PORT=str(provider_port),
        PAYMENT_PROVIDER_URL=provider_url,
        TEST_PAYMENT_PROVIDER_URL=provider_url,
    )
    running = Supervisor(tmp_path, env, ["payment_provider", "consumer", "worker", "events"])
    running.start()
    try:
        yield running
    finally:
        running.stop()


def test_killed_consumer_and_worker_are_restarted_counted_and_everything_stops(supervisor):
    provider_url = supervisor.env["PAYMENT_PROVIDER_URL"]
    wait_for(lambda: supervisor.running("consumer") and supervisor.running("worker"), timeout=90, interval=0.5,
             what="consumer and worker RUNNING under supervisord")  # fmt: skip
    wait_for(lambda: healthy(provider_url), timeout=30, what="the payment provider's /health")
    multiproc_dir = Path(supervisor.env["PROMETHEUS_MULTIPROC_DIR"])
    wait_for(
        lambda: restarts(multiproc_dir) == {"payment_provider": 0.0, "consumer": 0.0, "worker": 0.0, "events": 0.0},
        timeout=30, what="restart counters exported at zero",
    )  # fmt: skip

    provider = supervisor.running("payment_provider")
    os.kill(provider, signal.SIGKILL)
    wait_for(lambda: supervisor.running("payment_provider", not_pid=provider) and healthy(provider_url), timeout=60,
             interval=0.5, what="the payment provider restarted and healthy")  # fmt: skip

    consumer = supervisor.running("consumer")
    os.kill(consumer, signal.SIGKILL)
    wait_for(lambda: supervisor.running("consumer", not_pid=consumer), timeout=60, interval=0.5,
             what="the consumer restarted with a new pid")  # fmt: skip

    worker = supervisor.running("worker")
    pool = children(worker)
    assert len(pool) == 2, pool  # --concurrency 2
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: supervisor.running("worker", not_pid=worker), timeout=60, interval=0.5,
             what="the worker restarted with a new pid")  # fmt: skip
    # The killed worker's pool children do not linger taking tasks.
    wait_for(lambda: not any(alive(pid) for pid in pool), timeout=15, what="the old pool children gone")

    wait_for(
        lambda: restarts(multiproc_dir) == {"payment_provider": 1.0, "consumer": 1.0, "worker": 1.0, "events": 0.0},
        timeout=30, what="one counted restart each",
    )  # fmt: skip
    log = (supervisor.run_dir / "logs" / "events.log").read_text()
    assert "process consumer died" in log and "process worker died" in log

    survivors = [
        supervisor.running("payment_provider"), supervisor.running("consumer"), supervisor.running("worker"),
        *children(supervisor.running("worker")),
    ]  # fmt: skip
    assert all(survivors)
    assert supervisor.stop(signal.SIGINT) == 0  # Ctrl-C
    assert not [pid for pid in survivors if alive(pid)]
    assert not healthy(provider_url)
