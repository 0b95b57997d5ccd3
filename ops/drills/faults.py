"""The faults a drill injects into the running platform, each with its undo.

Processes are found the way an operator finds them: supervisord's programs
through its socket (`.run/supervisor.sock`), the broker and its proxy through
their pid files in `.run/`, Redis by asking the server behind REDIS_URL for
its pid, PostgreSQL's cluster by the port of DATABASE_URL. Every pid is
checked against its command line before it is signalled, so a stale pid file
never makes a drill stop an unrelated process.
"""
import logging
import os
import signal
import subprocess
import time
import xmlrpc.client
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import redis
from supervisor.xmlrpc import SupervisorTransport

from bench.e2e import payment_faults
from messaging.kafka.producer import EventProducer, OutgoingMessage
from ops.drills.broker_proxy import proxy_faults_reset, proxy_faults_write

logger = logging.getLogger(__name__)

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class DrillError(Exception):
    """The drill cannot inject its fault (nothing to signal, a platform not started by the run command)."""


@dataclass(frozen=True)
class Site:
    """Where the running platform's pieces are."""

    root: Path
    run_dir: Path
    kafka_port: int
    bootstrap_servers: list[str]
    redis_url: str
    database_url: str

    @property
    def tansu_pid_file(self) -> Path:
        return self.run_dir / f"tansu-{self.kafka_port}.pid"

    @property
    def proxy_pid_file(self) -> Path:
        return self.run_dir / f"kafka-proxy-{self.kafka_port}.pid"

    @property
    def proxy_control(self) -> Path:
        return self.run_dir / f"kafka-proxy-{self.kafka_port}.json"


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _pid_from_file(path: Path, *, expect: str) -> int:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError) as error:
        raise DrillError(f"no pid in {path}: is the platform running (bash scripts/run.sh)?") from error
    if expect not in _command_line(pid):
        raise DrillError(f"pid {pid} of {path} is not {expect} (stale pid file?)")
    return pid


# --- supervisord ---------------------------------------------------------------


class Supervisor:
    """The run command's supervisord, through its XML-RPC socket (what supervisorctl uses)."""

    def __init__(self, socket_path: Path) -> None:
        if not socket_path.exists():
            raise DrillError(f"no supervisord socket at {socket_path}: start the platform with `bash scripts/run.sh`")
        self.rpc = xmlrpc.client.ServerProxy(
            "http://127.0.0.1", transport=SupervisorTransport(None, None, f"unix://{socket_path}")
        ).supervisor

    def processes(self) -> list[dict]:
        return self.rpc.getAllProcessInfo()

    def info(self, name: str) -> dict:
        return self.rpc.getProcessInfo(name)

    def pid(self, name: str) -> int:
        info = self.info(name)
        if info["statename"] != "RUNNING" or not info["pid"]:
            raise DrillError(f"{name} is {info['statename']}, not RUNNING")
        return int(info["pid"])

    def wait_running(self, name: str, *, other_than: int | None = None, timeout_seconds: float = 90.0) -> int:
        """Wait until `name` is RUNNING (with a pid other than `other_than`); return its pid."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            info = self.info(name)
            if info["statename"] == "RUNNING" and info["pid"] and info["pid"] != other_than:
                return int(info["pid"])
            if info["statename"] == "STOPPED":
                self.rpc.startProcess(name, False)
            time.sleep(0.5)
        raise DrillError(f"{name} was not RUNNING again within {timeout_seconds:.0f} s")

    def kill(self, name: str) -> int:
        """SIGKILL the program's main process (supervisord restarts it); return the new pid."""
        pid = self.pid(name)
        logger.info("SIGKILL %s (pid %s)", name, pid)
        os.kill(pid, signal.SIGKILL)
        return self.wait_running(name, other_than=pid)

    def restart(self, name: str) -> None:
        """Stop and start one program, as `supervisorctl restart NAME` does, waiting for each."""
        info = self.info(name)
        if info["statename"] in ("RUNNING", "STARTING", "BACKOFF"):
            self.rpc.stopProcess(name, True)
        self.rpc.startProcess(name, True)

    def ensure_running(self, name: str) -> None:
        info = self.info(name)
        if info["statename"] in ("STOPPED", "EXITED", "FATAL"):
            self.rpc.startProcess(name, False)


# --- signals ---------------------------------------------------------------------


@contextmanager
def paused(pid: int, *, what: str) -> Iterator[None]:
    """SIGSTOP a process for the block and SIGCONT it afterwards, whatever happens in it."""
    logger.info("SIGSTOP %s (pid %s)", what, pid)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def tansu_pid(site: Site) -> int:
    return _pid_from_file(site.tansu_pid_file, expect="tansu")


def redis_pid(site: Site) -> int:
    """The pid of the redis-server behind REDIS_URL (asked of the server itself; local servers only)."""
    url = urlparse(site.redis_url)
    if url.hostname not in LOCAL_HOSTS:
        raise DrillError(f"Redis at {url.hostname} is not on this machine: a drill pauses only local processes")
    try:
        pid = int(redis.Redis.from_url(site.redis_url, socket_timeout=3).info("server")["process_id"])
    except redis.RedisError as error:
        raise DrillError(f"cannot ask Redis at {site.redis_url} for its pid: {error}") from error
    if "redis-server" not in _command_line(pid):
        raise DrillError(f"pid {pid} (from Redis at {site.redis_url}) is not a redis-server on this machine")
    return pid


def services_up(site: Site) -> None:
    """`scripts/services.sh up` with the drill's environment: starts what is down, re-creates the topics."""
    done = subprocess.run(
        ["bash", str(site.root / "scripts" / "services.sh"), "up"],
        cwd=site.root, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if done.returncode != 0:
        raise DrillError(f"scripts/services.sh up failed: {(done.stderr or done.stdout).strip()[-800:]}")


def broker_lose(site: Site) -> None:
    """SIGKILL the broker and start it again, empty (tansu keeps everything in memory), with the topics."""
    pid = tansu_pid(site)
    logger.info("SIGKILL tansu (pid %s)", pid)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    services_up(site)


# --- the broker's path -------------------------------------------------------------


@contextmanager
def broker_path_slowed(site: Site, *, delay_seconds: float, loss: float) -> Iterator[None]:
    """Delay and lose on every broker connection (the proxy in its path) for the block."""
    _pid_from_file(site.proxy_pid_file, expect="broker_proxy")  # refuse a platform without the proxy
    proxy_faults_write(site.proxy_control, delay_seconds=delay_seconds, loss=loss)
    try:
        yield
    finally:
        proxy_faults_reset(site.proxy_control)


# --- PostgreSQL ------------------------------------------------------------------


def postgres_cluster(database_url: str) -> tuple[str, str]:
    """The Debian cluster (version, name) that serves DATABASE_URL's port."""
    port = str(urlparse(database_url).port or 5432)
    try:
        listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise DrillError(f"pg_lsclusters failed: {error}") from error
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == port:
            return fields[0], fields[1]
    raise DrillError(f"no local PostgreSQL cluster listens on port {port} (DATABASE_URL)")


def postgres_restart(database_url: str) -> None:
    """Restart the cluster behind DATABASE_URL the way scripts/services.sh drives it."""
    version, name = postgres_cluster(database_url)
    logger.info("pg_ctlcluster %s %s restart", version, name)
    done = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if done.returncode != 0:
        raise DrillError(f"pg_ctlcluster {version} {name} restart failed: {done.stderr.strip()[-500:]}")


# --- the payment provider ------------------------------------------------------------


@contextmanager
def payment_faulty(*arguments: str) -> Iterator[None]:
    """Change the payment provider's faults through `manage.py payment_faults` for the block; `--reset` afterwards."""
    if payment_faults(*arguments) is None:
        raise DrillError("this checkout has no `manage.py payment_faults`")
    try:
        yield
    finally:
        payment_faults("--reset")


# --- poison ----------------------------------------------------------------------------


def poison_messages(nonce: str) -> list[tuple[str, bytes, bytes]]:
    """(kind, key, value) of undecodable messages, each unique to this drill by `nonce`."""
    tag = nonce.encode()
    return [
        ("nul-bytes", b"poison-nul-" + tag, b"\x00\x00\x00" + tag + b"\x00"),
        ("invalid-utf8", b"poison-utf8-" + tag, b'{"eventId": "\xff\xfe\xfa' + tag + b'"}'),
        # Magic byte 0, schema id 1, then an Avro body: what a Confluent serializer sends.
        ("confluent-wire-format", b"poison-confluent-" + tag, b"\x00\x00\x00\x00\x01\x02\x0c" + tag),
        ("not-json", b"poison-text-" + tag, b"this is not JSON " + tag),
    ]


def poison_produce(site: Site, *, topic: str, messages: list[tuple[str, bytes, bytes]]) -> None:
    """Send the messages to `topic` on the platform's broker, acknowledged."""
    producer = EventProducer(bootstrap_servers=site.bootstrap_servers, timeout_seconds=20.0, max_request_bytes=1048576)
    try:
        results = producer.send_batch(
            [OutgoingMessage(topic=topic, key=key, value=value, headers=(("drill", b"poison"),)) for _, key, value in messages]
        )
    finally:
        producer.close(timeout_seconds=5.0)
    failed = [result for result in results if result.status != "ACKED"]
    if failed:
        raise DrillError(f"the broker did not take the poison messages: {failed[0].error}")


# --- undo everything ---------------------------------------------------------------------


def faults_reset(site: Site, supervisor: Supervisor | None) -> list[str]:
    """Undo whatever a drill killed with SIGKILL may have left: return what was done."""
    done = []
    for what, pid_of in (("tansu", lambda: tansu_pid(site)), ("redis-server", lambda: redis_pid(site))):
        try:
            os.kill(pid_of(), signal.SIGCONT)
            done.append(f"SIGCONT {what}")
        except (DrillError, OSError):
            pass
    proxy_faults_reset(site.proxy_control)
    done.append("broker path healed")
    payment_faults("--reset")
    done.append("payment_faults --reset")
    if supervisor is not None:
        for process in supervisor.processes():
            name = f"{process['group']}:{process['name']}"
            if process["statename"] in ("STOPPED", "EXITED", "FATAL"):
                supervisor.rpc.startProcess(name, False)
                done.append(f"started {name}")
    return done
