"""Where the suite finds PostgreSQL, Redis and Kafka.

Loaded as an early plugin (`-p tests.services` in pytest.ini) so it runs
before pytest-django reads the settings:

* a service whose URL is in the environment is used as given;
* otherwise, where a Docker engine answers, testcontainers starts it;
* otherwise the local default (127.0.0.1) is used (`scripts/services.sh up`).

Every service the selected tests need is then checked once; an unreachable
one stops the run with a hint instead of failing hundreds of tests (or, worse,
skipping them). Tests marked `kafka` need the broker, `unit` ones nothing.
"""
import os
import socket
from urllib.parse import urlparse

import pytest

_containers: list = []


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
    checks = {}
    if any(item.get_closest_marker("unit") is None for item in session.items):
        database = settings.DATABASES["default"]
        redis_url = urlparse(settings.REDIS_URL)
        checks["PostgreSQL"] = (database.get("HOST") or "127.0.0.1", int(database.get("PORT") or 5432))
        checks["Redis"] = (redis_url.hostname or "127.0.0.1", redis_url.port or 6379)
    if any(item.get_closest_marker("kafka") is not None for item in session.items):
        host, _, port = settings.KAFKA_BOOTSTRAP_SERVERS[0].rpartition(":")
        checks["Kafka"] = (host, int(port))
    down = [f"{name} at {host}:{port}" for name, (host, port) in checks.items() if not _reachable(host, port)]
    if down:
        pytest.exit(f"Not reachable: {', '.join(down)}. {HINT}", returncode=3)


def pytest_unconfigure(config) -> None:
    for container in reversed(_containers):
        container.stop()
