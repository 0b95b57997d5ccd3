"""Whole platforms for the drill and soak tests: supervisord running the repository's programs, a broker behind the proxy.

`DrillPlatform` is the run command's own supervisord with the repository's
program definitions (a chosen few) on free ports, the test database, the test
Redis and the test's broker. `ProxiedBroker` is the run command's broker
path: tansu advertising the fault proxy's address (ops/drills/broker_proxy.py),
so every client goes through the proxy, with the pid files the drills look
for in the run directory.
"""
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import requests

from messaging.contract.events import TOPICS
from messaging.kafka.admin import topics_ensure
from ops.drills import faults
from ops.soak.runner import SoakOptions
from ops.soak.workload import WorkloadMix
from tests.servers import free_port
from tests.support import ROOT, DisposableBroker, platform_process_env, wait_for

DRILL_PROGRAMS = ("payment_provider", "web", "worker", "beat", "consumer", "events", "prometheus")
SOAK_PROGRAMS = ("payment_provider", "web", "worker", "beat", "consumer")

# The suite's short soak (tests/ops/test_soak.py): two minutes, a fixed seed
# whose schedule has 8 faults, all overlapping another (test_soak_schedule.py
# checks at least 4): a relay frozen holding its row locks, the provider
# hanging, then killed, Redis's data lost, a transaction held open, ambiguous
# payments, a web worker and the Celery worker killed. Drawn among the kinds a
# test platform takes; left out: PostgreSQL's crash and restart and Redis's
# pause (the suite shares those servers with its other workers), the broker's
# loss (the run command's services.sh starts it again) and the rolling restart
# (a minute of its own). The bound is the run command's default's floor: an
# order whose payment was in doubt may wait for a second re-drive (20-40 s
# after the first, at the test platform's ORDER_RECONCILE_AFTER_SECONDS of 20).
SHORT_SOAK = SoakOptions(
    minutes=2.0, rate=2.0, seed=38, base_url="", out=Path(), quiet_seconds=30.0, settle_within_seconds=180.0, gap=(5.0, 12.0),
    max_hold_seconds=20.0, manager=("", "password123"), request_timeout=10.0, mix=WorkloadMix(),
    kinds=["broker-pause", "broker-latency", "consumer-cut", "relay-cut", "relay-frozen", "worker-kill", "consumer-kill", "web-kill",
           "redis-flush", "payment-slow", "payment-failing", "payment-ambiguous", "payment-errors", "provider-kill", "held-transaction",
           "poison-burst"],
)  # fmt: skip


class DrillPlatform:
    """supervisord running `programs` for the test; stopped (all of it) afterwards."""

    def __init__(self, run_dir: Path, *, programs: tuple[str, ...] = DRILL_PROGRAMS, env: dict[str, str] | None = None) -> None:
        self.run_dir = run_dir
        self.programs = programs
        self.web_port = free_port()
        self.prometheus_port = free_port()
        self.payment_provider_url = f"http://127.0.0.1:{free_port()}"
        (run_dir / "logs").mkdir()
        multiproc = run_dir / "prometheus"
        multiproc.mkdir()
        if "prometheus" in programs:
            (run_dir / "prometheus-data").mkdir()
            # The run command's Prometheus configuration, every second instead of every 15 s.
            config = (ROOT / "ops" / "prometheus" / "prometheus.local.yml").read_text()
            for placeholder, value in {"@ROOT@": str(ROOT), "@WEB_PORT@": str(self.web_port), "@PROMETHEUS_PORT@": str(self.prometheus_port),
                                       "@ALERTMANAGER_PORT@": str(free_port()), "15s": "1s", "10s": "1s"}.items():  # fmt: skip
                config = config.replace(placeholder, value)
            (run_dir / "prometheus.yml").write_text(config)
        main = (ROOT / "ops" / "supervisor" / "supervisord.conf").read_text()
        included = " ".join(str(ROOT / "ops" / "supervisor" / "programs" / f"{name}.conf") for name in programs)
        self.config = run_dir / "supervisord.conf"
        self.config.write_text(main.replace("files = programs/*.conf", f"files = {included}"))
        self.env = platform_process_env(**{
            "PLATFORM_ROOT": str(ROOT), "RUN_DIR": str(run_dir), "PYTHON": sys.executable, "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
            "WEB_PORT": str(self.web_port), "PROMETHEUS_PORT": str(self.prometheus_port),
            "PROMETHEUS_BIN": shutil.which("prometheus") or "prometheus", "OUTBOX_TRIGGER_ON_COMMIT": "1", "LOG_LEVEL": "WARNING",
            "PAYMENT_PROVIDER_PORT": self.payment_provider_url.rsplit(":", 1)[1], "PAYMENT_PROVIDER_URL": self.payment_provider_url,
            "TEST_PAYMENT_PROVIDER_URL": self.payment_provider_url, **(env or {}),
        })  # fmt: skip
        self.process: subprocess.Popen | None = None
        self.manager = ""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def supervisor_socket(self) -> Path:
        return self.run_dir / "supervisor.sock"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.config)],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

        def ready() -> bool:
            checks = [f"{self.base_url}/health/live"]
            if "payment_provider" in self.programs:
                checks.append(f"{self.payment_provider_url}/health")
            if "prometheus" in self.programs:
                checks.append(f"http://127.0.0.1:{self.prometheus_port}/-/ready")
            try:
                return all(requests.get(url, timeout=1).status_code == 200 for url in checks)
            except requests.RequestException:
                return False

        wait_for(ready, timeout=90, interval=0.5, what="web, the payment provider and Prometheus of the drill platform")
        supervisor = faults.Supervisor(self.supervisor_socket)
        wait_for(lambda: all(p["statename"] == "RUNNING" for p in supervisor.processes()), timeout=60, interval=0.5,
                 what="every program RUNNING")  # fmt: skip

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            subprocess.run(["pkill", "-KILL", "-s", str(self.process.pid)], check=False)
            self.process.kill()
            self.process.wait()


class ProxiedBroker(DisposableBroker):
    """tansu behind the drills' fault proxy, as `scripts/services.sh` runs it with KAFKA_FAULT_PROXY=1.

    `bootstrap` is the proxy's address, the only one clients learn; the pid
    files and the proxy's control file sit in `run_dir` under the names
    `ops.drills.faults.Site` looks for (KAFKA_PORT being the proxy's port).
    """

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.proxy_port = free_port()
        self.proxy: subprocess.Popen | None = None
        run_dir.mkdir(parents=True, exist_ok=True)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.proxy_port}"

    @property
    def site(self) -> faults.Site:
        return faults.Site(root=ROOT, run_dir=self.run_dir, kafka_port=self.proxy_port, bootstrap_servers=[self.bootstrap],
                           redis_url="", database_url="")  # fmt: skip

    def start(self, topics=TOPICS) -> None:
        self.process = subprocess.Popen(
            [self.binary, "broker", "--listener-url", f"tcp://127.0.0.1:{self.port}", "--advertised-listener-url", f"tcp://{self.bootstrap}",
             "--silent"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.site.tansu_pid_file.write_text(str(self.process.pid))
        self.proxy = subprocess.Popen(
            [sys.executable, "-m", "ops.drills.broker_proxy", "--listen", self.bootstrap, "--target", f"127.0.0.1:{self.port}",
             "--control", str(self.site.proxy_control)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.site.proxy_pid_file.write_text(str(self.proxy.pid))
        wait_for(lambda: _accepting(self.port) and _accepting(self.proxy_port), timeout=15, what="tansu and its proxy")
        topics_ensure(bootstrap_servers=[self.bootstrap], topics=topics)

    def kill(self) -> None:
        super().kill()
        if self.proxy is not None and self.proxy.poll() is None:
            self.proxy.terminate()
            self.proxy.wait(timeout=10)


def _accepting(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False
