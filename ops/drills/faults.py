"""The faults a drill injects into the running platform, each with its undo.

Processes are found the way an operator finds them: supervisord's programs
through its socket (`.run/supervisor.sock`), the broker and its proxy through
their pid files in `.run/`, Redis by asking the server behind REDIS_URL for
its pid, PostgreSQL's cluster by the port of DATABASE_URL (its postmaster as
the parent of a backend of ours), a relay holding row locks by the client port
PostgreSQL shows for its backend. Every pid is checked against its command
line before it is signalled, so a stale pid file never makes a drill stop an
unrelated process.

The soak (ops/soak) adds faults no single drill had: a web worker, the
postmaster or Redis's data lost, one client cut from the broker while the
others reach it, a transaction held open, a relay frozen while it holds row
locks. Those that take a shared service down refuse to when it serves more
than the platform (`service_sole_user_check`).
"""
import json
import logging
import os
import pwd
import signal
import subprocess
import time
import xmlrpc.client
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

import psycopg2
import redis
from supervisor.xmlrpc import SupervisorTransport

from bench.e2e import payment_faults
from bench.processes import socket_owner, tcp_socket_inodes
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

    @property
    def postgres_crash_note(self) -> Path:
        return self.run_dir / "postgres-crashed.json"


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


def proxy_pid(site: Site) -> int:
    """The broker proxy's pid; DrillError for a platform without the proxy in the broker's path."""
    return _pid_from_file(site.proxy_pid_file, expect="broker_proxy")


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
    proxy_pid(site)  # refuse a platform without the proxy
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
    """Restart the cluster behind DATABASE_URL: Debian's pg_ctlcluster for its clusters, else pg_ctl on its data directory."""
    command = _postgres_control(database_url, postmaster_info(database_url), "restart")
    logger.info("%s", " ".join(command))
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise DrillError(f"{' '.join(command)} failed: {(done.stderr or done.stdout).strip()[-500:]}")


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


# --- processes by parentage ----------------------------------------------------------------


def process_children(pid: int) -> list[int]:
    """The live child processes of `pid` (read from /proc), in pid order."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name may hold spaces and parentheses: the fields start after the last ")".
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(entry.name))
    return sorted(children)


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def web_worker_kill(supervisor: Supervisor, *, timeout_seconds: float = 60.0) -> int:
    """SIGKILL one gunicorn worker of the web program (its master starts another); return the killed pid."""
    master = supervisor.pid("web")
    workers = process_children(master)
    if not workers:
        raise DrillError(f"the web master (pid {master}) has no worker to kill")
    victim = workers[0]
    if "gunicorn" not in _command_line(victim):
        raise DrillError(f"pid {victim} under the web master is not a gunicorn worker")
    logger.info("SIGKILL web worker (pid %s)", victim)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        now = process_children(master)
        if victim not in now and len(now) >= len(workers):
            return victim
        time.sleep(0.2)
    raise DrillError(f"gunicorn did not replace its killed worker within {timeout_seconds:.0f} s")


# --- shared services ------------------------------------------------------------------------


def _database_name(database_url: str) -> str:
    return urlparse(database_url).path.lstrip("/")


def _pg_connect(database_url: str, **options) -> "psycopg2.extensions.connection":
    connection = psycopg2.connect(database_url, connect_timeout=5, application_name="ecommerce-drill", **options)
    connection.autocommit = True
    return connection


def service_sole_user_check(*, database_url: str | None = None, redis_url: str | None = None, redis_databases: set[int] = frozenset()) -> None:
    """Refuse a fault that takes a whole server down when it serves more than the platform.

    PostgreSQL: the cluster may hold no database but the platform's (and
    postgres/template*). Redis: no database but the platform's may hold keys.
    On a shared machine, give the platform servers of its own first.
    """
    if database_url is not None:
        connection = _pg_connect(database_url)
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT datname FROM pg_database WHERE datname NOT IN ('postgres', 'template0', 'template1', current_database())"
                )
                others = sorted(name for (name,) in cursor.fetchall())
        finally:
            connection.close()
        if others:
            raise DrillError(
                f"the PostgreSQL cluster of DATABASE_URL also serves {', '.join(others[:5])}: a crash or restart would take "
                "them down too. Give the platform a cluster of its own (docs/runbook.md, Chaos playbook)."
            )
    if redis_url is not None:
        try:
            keyspace = redis.Redis.from_url(redis_url, socket_timeout=3).info("keyspace")
        except redis.RedisError as error:
            raise DrillError(f"cannot ask Redis at {redis_url} what it holds: {error}") from error
        others = sorted(name for name in keyspace if int(name.removeprefix("db")) not in redis_databases)
        if others:
            raise DrillError(
                f"the Redis server of REDIS_URL also holds {', '.join(others)} (the platform uses "
                f"{sorted(redis_databases)}): pausing or restarting it would hit their owners too."
            )


# --- PostgreSQL crash ------------------------------------------------------------------------


@dataclass(frozen=True)
class PostmasterInfo:
    pid: int
    data_directory: str
    port: int


def postmaster_info(database_url: str) -> PostmasterInfo:
    """The postmaster behind DATABASE_URL: the parent of a backend of ours (local clusters only)."""
    url = urlparse(database_url)
    if url.hostname not in LOCAL_HOSTS:
        raise DrillError(f"PostgreSQL at {url.hostname} is not on this machine: a drill signals only local processes")
    connection = _pg_connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid(), current_setting('data_directory'), current_setting('port')::int")
            backend, data_directory, port = cursor.fetchone()
        pid = _parent(backend)  # while the backend lives
    finally:
        connection.close()
    line = _command_line(pid)
    if "postgres" not in line and "postmaster" not in line:
        raise DrillError(f"pid {pid}, parent of backend {backend}, is not a postmaster: {line[:80]!r}")
    return PostmasterInfo(pid=pid, data_directory=data_directory, port=port)


def _pg_accepting(database_url: str) -> bool:
    try:
        _pg_connect(database_url).close()
        return True
    except psycopg2.Error:
        return False


def postgres_start(database_url: str, info: PostmasterInfo, *, timeout_seconds: float = 120.0) -> None:
    """Start the cluster again: Debian's pg_ctlcluster for its clusters, else pg_ctl on the data directory.

    Retried until it accepts connections: after a postmaster's SIGKILL its
    backends take a moment to notice and exit, and a new postmaster refuses to
    start while they still hold the old shared memory.
    """
    command = _postgres_control(database_url, info, "start")
    deadline = time.monotonic() + timeout_seconds
    while True:
        if _pg_accepting(database_url):
            return
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
        if done.returncode == 0 and _pg_accepting(database_url):
            return
        if time.monotonic() > deadline:
            raise DrillError(f"PostgreSQL did not start again within {timeout_seconds:.0f} s: {(done.stderr or done.stdout).strip()[-500:]}")
        time.sleep(1)


def _postgres_control(database_url: str, info: PostmasterInfo, action: str) -> list[str]:
    """The command that starts or restarts the cluster: pg_ctlcluster for Debian's clusters, else pg_ctl as its owner."""
    try:
        version, name = postgres_cluster(database_url)
        return ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, action]
    except DrillError:
        pass
    bindir = subprocess.run(["pg_config", "--bindir"], check=False, capture_output=True, text=True, timeout=30).stdout.strip()
    command = [str(Path(bindir) / "pg_ctl"), "-D", info.data_directory, "-l", f"{info.data_directory}/restart.log", action, "-w", "-t", "60"]
    owner = Path(info.data_directory).stat().st_uid
    if os.geteuid() == 0 and owner != 0:  # PostgreSQL refuses to run as root
        command = ["runuser", "-u", pwd.getpwuid(owner).pw_name, "--", *command]
    return command


@contextmanager
def postgres_crashed(site: Site) -> Iterator[None]:
    """SIGKILL the postmaster (a crash, not a shutdown: the restart replays the WAL); start it again after the block.

    Where it was is noted in the run directory until it is up again, so
    `scripts/drill.sh reset` can start it after a soak that was itself killed.
    """
    service_sole_user_check(database_url=site.database_url)
    info = postmaster_info(site.database_url)
    site.postgres_crash_note.write_text(json.dumps(asdict(info)))
    logger.info("SIGKILL postmaster (pid %s)", info.pid)
    os.kill(info.pid, signal.SIGKILL)
    try:
        yield
    finally:
        postgres_start(site.database_url, info)
        site.postgres_crash_note.unlink(missing_ok=True)


@contextmanager
def transaction_held_open(database_url: str) -> Iterator[None]:
    """Hold a transaction with an xid and a snapshot open for the block: vacuum can reclaim nothing newer."""
    connection = psycopg2.connect(database_url, connect_timeout=5, application_name="ecommerce-drill-held-transaction")
    try:
        with connection.cursor() as cursor:
            cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            cursor.execute("SELECT txid_current()")
            cursor.execute("SELECT count(*) FROM outbox_outboxevent")
        yield
    finally:
        try:
            connection.rollback()
        except psycopg2.Error:
            pass  # the server ended it (a crash, a time-out): nothing is held any more
        connection.close()


# --- Redis losing its data ------------------------------------------------------------------


def redis_data_lose(redis_urls: list[str]) -> list[str]:
    """FLUSHDB each of the platform's Redis databases (breaker states, throttles, flags, the fault switch); return them."""
    flushed = []
    for url in dict.fromkeys(redis_urls):
        try:
            redis.Redis.from_url(url, socket_timeout=3).flushdb()
        except redis.RedisError as error:
            raise DrillError(f"FLUSHDB on {url} failed: {error}") from error
        flushed.append(url)
    logger.info("FLUSHDB %s", ", ".join(flushed))
    return flushed


# --- one client cut from the broker -----------------------------------------------------------

# The client.id prefixes of the platform's Kafka clients (messaging/kafka/):
# the order consumer's is its group's name, the producer's (relay, dead letters) this.
PRODUCER_CLIENT_PREFIX = "ecommerce-outbox"


@contextmanager
def broker_path_clients(site: Site, *, cut: tuple[str, ...] = (), slow: dict[str, float] | None = None) -> Iterator[None]:
    """Cut or slow the broker connections of the clients whose client.id starts with a prefix; heal after the block."""
    proxy_pid(site)
    proxy_faults_write(site.proxy_control, cut_clients=cut, slow_clients=slow or {})
    try:
        yield
    finally:
        proxy_faults_reset(site.proxy_control)


# --- a relay frozen while it holds row locks -------------------------------------------------------

# How long the relay's sends are slowed so that one is caught holding its rows'
# locks (it holds them across the send), and how long to look for one.
RELAY_HOLD_DELAY_SECONDS = 3.0
RELAY_FIND_SECONDS = 30.0
_OUTBOX_LOCKERS_SQL = """
    SELECT DISTINCT activity.pid, activity.client_port
    FROM pg_locks locks JOIN pg_stat_activity activity ON activity.pid = locks.pid
    WHERE locks.locktype = 'relation' AND locks.relation = 'outbox_outboxevent'::regclass
      AND locks.mode = 'RowShareLock' AND activity.pid <> pg_backend_pid()
"""


def relay_holding_locks(database_url: str, worker_pid: int, *, timeout_seconds: float = RELAY_FIND_SECONDS) -> int | None:
    """The pid of a Celery worker process whose relay holds outbox row locks now (None if none is seen in time)."""
    url = urlparse(database_url)
    if url.hostname not in LOCAL_HOSTS:
        raise DrillError("a relay is found through its TCP connection to a local PostgreSQL only")
    connection = _pg_connect(database_url)
    deadline = time.monotonic() + timeout_seconds
    try:
        with connection.cursor() as cursor:
            while time.monotonic() < deadline:
                cursor.execute(_OUTBOX_LOCKERS_SQL)
                candidates = [worker_pid, *process_children(worker_pid)]
                for _backend, client_port in cursor.fetchall():
                    if client_port is None or client_port < 0:
                        continue
                    owner = socket_owner(tcp_socket_inodes(client_port, url.port or 5432), candidates)
                    if owner is not None:
                        return owner
                time.sleep(0.05)
    finally:
        connection.close()
    return None


@contextmanager
def relay_frozen(site: Site, supervisor: Supervisor) -> Iterator[int]:
    """SIGSTOP a relay (a Celery worker process) while it holds outbox row locks; SIGCONT it after the block.

    Its sends are slowed first (through the proxy) so that a relay is caught
    inside its transaction; the path is healed as soon as it is frozen. Yield its pid.
    """
    with broker_path_clients(site, slow={PRODUCER_CLIENT_PREFIX: RELAY_HOLD_DELAY_SECONDS}):
        pid = relay_holding_locks(site.database_url, supervisor.pid("worker"))
        if pid is None:
            raise DrillError(f"no relay was seen holding outbox row locks within {RELAY_FIND_SECONDS:.0f} s (no load?)")
        logger.info("SIGSTOP relay worker holding outbox row locks (pid %s)", pid)
        os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


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
    if site.postgres_crash_note.exists():
        try:
            postgres_start(site.database_url, PostmasterInfo(**json.loads(site.postgres_crash_note.read_text())), timeout_seconds=60)
            site.postgres_crash_note.unlink()
            done.append("PostgreSQL started again after a crash")
        except (DrillError, ValueError, TypeError) as error:
            done.append(f"PostgreSQL crashed by a soak was not started: {error}")
    if supervisor is not None:
        try:
            worker = supervisor.pid("worker")
            for pid in (worker, *process_children(worker)):
                os.kill(pid, signal.SIGCONT)  # a relay the soak froze
            done.append("SIGCONT worker processes")
        except (DrillError, OSError):
            pass
        for process in supervisor.processes():
            name = f"{process['group']}:{process['name']}"
            if process["statename"] in ("STOPPED", "EXITED", "FATAL"):
                supervisor.rpc.startProcess(name, False)
                done.append(f"started {name}")
    return done
