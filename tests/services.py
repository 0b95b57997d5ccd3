"""Where the suite finds PostgreSQL, Redis and Kafka.

Loaded as an early plugin (`-p tests.services` in pytest.ini) so it runs
before pytest-django reads the settings:

* a service whose URL is in the environment is used as given;
* otherwise, where a Docker engine answers, testcontainers starts it;
* otherwise the local default (127.0.0.1) is used (`scripts/services.sh up`).

In a parallel run (pytest-xdist, `-n N`: scripts/test.sh's default) each
worker gets services of its own, so one worker's flushes, breaker keys,
Celery queues and topic offsets never meet another's: pytest-django names its
database test_<name>_gwN, and here the worker starts a redis-server and (when
it runs `kafka` tests) a tansu broker on free ports of its own, which die
with it. A run without `-n` uses the shared ones as before.

Every service the selected tests need is then checked once; an unreachable
one stops the run with a hint instead of failing hundreds of tests (or, worse,
skipping them). Tests marked `kafka` need the broker, `unit` ones nothing.
"""
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest

_containers: list = []
# What this xdist worker started for itself (redis-server, the broker), stopped in pytest_unconfigure.
_worker_processes: list = []
# Whether this xdist worker has a Redis no other worker writes to (its own server, or a container).
_worker_redis_own = False
# How many `many_connections` tests a parallel run lets run at once, across its
# workers. A consumer holds up to two PostgreSQL connections per message in
# flight (16 by default: 33 seen), a test's thread pool one per thread (up to
# 50), and the server's 100 are shared with every other run on the machine:
# four such tests at once, one per worker, ran out of them.
MANY_CONNECTIONS_AT_ONCE = 2


def _xdist_worker() -> str | None:
    """This process's xdist worker id (gw0, gw1, ...) in a parallel run; None in a plain one."""
    return os.environ.get("PYTEST_XDIST_WORKER")


def _die_with_parent() -> None:
    """In a service's child process: be killed with the worker that started it.

    Linux's PR_SET_PDEATHSIG (prctl option 1): a worker killed outright (a
    crash, SIGKILL on a hung run) runs no teardown, and its redis-server would
    otherwise keep running. Elsewhere the teardown in pytest_unconfigure is all.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (tests.support re-exports it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker_redis_start() -> str | None:
    """Start a memory-only redis-server for this worker on a free port; return its base URL (None: no redis-server).

    A server of its own rather than some of the shared server's 16 databases:
    those are spoken for (the platform's, other checkouts' and runs'), and a
    worker's count should not be bounded by what is left of them.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    for _ in range(5):  # the free port may be taken between picking and binding: pick again
        port = free_port()
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", tempfile.gettempdir(), "--logfile", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            if _reachable("127.0.0.1", port):
                _worker_processes.append(process)
                return f"redis://127.0.0.1:{port}"
            time.sleep(0.05)
        process.kill()
        process.wait()
    pytest.exit("could not start a redis-server for this xdist worker (5 attempts)", returncode=3)


def _worker_broker_start() -> str:
    """Start a tansu broker of this worker's own with the platform's topics; return its bootstrap address."""
    # Imported here, not at the top: tests.support reads Django settings, which
    # are not configured yet when this plugin is loaded (before pytest-django).
    from tests.support import DisposableBroker

    broker = DisposableBroker(preexec_fn=_die_with_parent)
    broker.start()
    _worker_processes.append(broker.process)
    return broker.bootstrap


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


def _start_containers() -> None:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer
    from testcontainers.redis import RedisContainer

    if "DATABASE_URL" not in os.environ:
        postgres = PostgresContainer("postgres:16", driver=None).start()
        _containers.append(postgres)
        os.environ["DATABASE_URL"] = postgres.get_connection_url()
    if "TEST_REDIS_URL" not in os.environ:
        redis = RedisContainer("redis:7").start()
        _containers.append(redis)
        host, port = redis.get_container_host_ip(), redis.get_exposed_port(6379)
        os.environ["TEST_REDIS_URL"] = f"redis://{host}:{port}/15"
        os.environ["TEST_CELERY_BROKER_URL"] = f"redis://{host}:{port}/14"
    if "KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
        kafka = KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft().start()
        _containers.append(kafka)
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = kafka.get_bootstrap_server()


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args) -> None:
    global _worker_redis_own
    if _xdist_worker() and (base := _worker_redis_start()):
        # The suite's usual database numbers, on a server no other worker uses.
        os.environ["TEST_REDIS_URL"] = f"{base}/15"
        os.environ["TEST_CELERY_BROKER_URL"] = f"{base}/14"
        _worker_redis_own = True
    elif _xdist_worker() and "TEST_REDIS_URL" not in os.environ and _docker_answers():
        _worker_redis_own = True  # _start_containers below gives this worker a Redis container
    wanted = ("DATABASE_URL", "TEST_REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")
    if any(name not in os.environ for name in wanted) and _docker_answers():
        _start_containers()


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


HINT = (
    "Start the local services with `bash scripts/services.sh up` (or point DATABASE_URL, "
    "TEST_REDIS_URL and KAFKA_BOOTSTRAP_SERVERS at running ones)."
)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session) -> None:
    """Check the services the selected tests need: none for `unit` ones, Kafka only for `kafka` ones.

    After collection, so `-m unit` runs with no service at all and
    `-m "not kafka"` without a broker.
    """
    from django.conf import settings

    if session.config.option.collectonly:
        return
    needs_services = any(item.get_closest_marker("unit") is None for item in session.items)
    needs_kafka = any(item.get_closest_marker("kafka") is not None for item in session.items)
    if _xdist_worker() and needs_services and not _worker_redis_own:
        pytest.exit(
            "A parallel run gives every worker a redis-server of its own, and redis-server is not installed "
            "(sudo apt-get install -y redis-server); or run serially with `-n 0`.",
            returncode=3,
        )
    if _xdist_worker() and needs_kafka:
        # Every worker collects the whole selection, so each knows here whether it may run `kafka` tests.
        bootstrap = _worker_broker_start()
        settings.KAFKA_BOOTSTRAP_SERVERS = [bootstrap]
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap  # for servers the tests start from os.environ
    checks = {}
    if needs_services:
        database = settings.DATABASES["default"]
        redis_url = urlparse(settings.REDIS_URL)
        checks["PostgreSQL"] = (database.get("HOST") or "127.0.0.1", int(database.get("PORT") or 5432))
        checks["Redis"] = (redis_url.hostname or "127.0.0.1", redis_url.port or 6379)
    if needs_kafka:
        host, _, port = settings.KAFKA_BOOTSTRAP_SERVERS[0].rpartition(":")
        checks["Kafka"] = (host, int(port))
    down = [f"{name} at {host}:{port}" for name, (host, port) in checks.items() if not _reachable(host, port)]
    if down:
        pytest.exit(f"Not reachable: {', '.join(down)}. {HINT}", returncode=3)


@contextmanager
def _many_connections_slot(directory: Path) -> Iterator[None]:
    """Hold one of the run's MANY_CONNECTIONS_AT_ONCE slots (lock files in `directory`), waiting for one to be free.

    flock, not pytest-xdist's --dist loadgroup: loadgroup (xdist 3.8) groups
    nothing under pytest 9.2 (pytest-dev/pytest-xdist#1386), and a slot lets
    whichever worker is free run the next such test instead of pinning them.
    The kernel releases a dead worker's lock.
    """
    while True:
        for slot in range(MANY_CONNECTIONS_AT_ONCE):
            handle = open(directory / f"many-connections-{slot}.lock", "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield
            finally:
                handle.close()  # releases the lock
            return
        time.sleep(0.2)


# tryfirst: the outermost wrapper, so the wait for a slot comes before
# pytest-timeout starts a test's timer (a test that waited minutes behind the
# short soak timed out without having run long).
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    """Run a `many_connections` test of a parallel run only in a free slot (setup and teardown included)."""
    if not _xdist_worker() or item.get_closest_marker("many_connections") is None:
        return (yield)
    # The workers' base temporary directories are siblings in the run's own one.
    with _many_connections_slot(Path(item.config.option.basetemp).parent):
        return (yield)


def pytest_unconfigure(config) -> None:
    for container in reversed(_containers):
        container.stop()
    for process in reversed(_worker_processes):
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
