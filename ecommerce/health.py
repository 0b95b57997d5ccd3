"""Liveness and readiness (docs/contract.md "Endpoints").

Ready means "this web process can take a checkout", and a checkout needs
PostgreSQL only: without Redis carts are read from PostgreSQL, without Kafka
events wait in the outbox. So readiness answers 503 only when PostgreSQL is
down; Redis or Kafka down answers 200 DEGRADED, naming them, with every
dependency's state in the body. A load balancer or orchestrator reading it
would otherwise take the whole web tier out of service during a broker outage,
the one thing the outbox exists to ride out.
"""
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
# Without these no checkout can be taken; without the others it is, degraded.
REQUIRED = frozenset({"database"})
# What a checkout does without each optional dependency, for the body's detail.
WITHOUT = {
    "redis": "carts are read from PostgreSQL",
    "kafka": "events wait in the outbox",
}


def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "UP"})


def ready(request: HttpRequest) -> JsonResponse:
    components: dict[str, dict[str, str]] = {}
    for name, check in CHECKS.items():
        try:
            check()
            components[name] = {"status": "UP"}
        except Exception as error:  # any failure is that dependency's state, never a 500
            logger.warning("readiness check failed", extra={"component": name, "error": repr(error)})
            components[name] = {"status": "DOWN", "error": type(error).__name__}
    unavailable = [name for name, component in components.items() if component["status"] == "DOWN"]
    down = [name for name in unavailable if name in REQUIRED]
    degraded = [name for name in unavailable if name not in REQUIRED]
    if down:
        return JsonResponse(
            {
                "status": "DOWN",
                "detail": "Not ready: " + ", ".join(down) + " down; no checkout can be taken.",
                "down": down,
                "degraded": degraded,
                "components": components,
            },
            status=503,
        )
    if degraded:
        effects = "; ".join(f"{name} down: {WITHOUT[name]}" for name in degraded)
        return JsonResponse(
            {
                "status": "DEGRADED",
                "detail": f"Ready, degraded ({effects}).",
                "degraded": degraded,
                "components": components,
            }
        )
    return JsonResponse({"status": "UP", "components": components})
