"""Liveness and readiness (docs/contract.md "Endpoints": ready checks PostgreSQL, Redis and Kafka)."""
import logging
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from messaging.kafka.connection import broker_ping
from resilience.redis_client import shared_fail_fast_client

logger = logging.getLogger(__name__)


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_redis() -> None:
    # A longer timeout than the hot path's: readiness may wait a little, a cart may not.
    shared_fail_fast_client(settings.REDIS_URL, timeout_seconds=settings.REDIS_SOCKET_TIMEOUT_SECONDS * 4).ping()


def _check_kafka() -> None:
    broker_ping(
        bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
        timeout_seconds=settings.KAFKA_HEALTH_TIMEOUT_SECONDS,
    )


CHECKS: dict[str, Callable[[], None]] = {
    "database": _check_database,
    "redis": _check_redis,
    "kafka": _check_kafka,
}


def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "UP"})


def ready(request: HttpRequest) -> JsonResponse:
    components: dict[str, dict[str, str]] = {}
    down: list[str] = []
    for name, check in CHECKS.items():
        try:
            check()
            components[name] = {"status": "UP"}
        except Exception as error:  # any failure means "not ready", never a 500
            logger.warning("readiness check failed", extra={"component": name, "error": repr(error)})
            components[name] = {"status": "DOWN", "error": type(error).__name__}
            down.append(name)
    if down:
        return JsonResponse(
            {"status": "DOWN", "detail": "Not ready: " + ", ".join(down) + " down.", "down": down, "components": components},
            status=503,
        )
    return JsonResponse({"status": "UP", "components": components})
