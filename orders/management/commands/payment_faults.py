import json

import redis
from django.core.management.base import BaseCommand, CommandError, CommandParser

from orders.payment_faults import (
    FAILURE_KINDS,
    InvalidPaymentFaults,
    payment_faults_cache_clear,
    payment_faults_current,
    payment_faults_overrides,
    payment_faults_reset,
    payment_faults_set,
)


class Command(BaseCommand):
    help = (
        "Change the mock payment provider on a running platform (every process sees it within a second): "
        "--latency, --success-rate, --failure-kind; --reset returns to the PAYMENT_MOCK_* settings; --show prints it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--latency", type=float, help="seconds the provider takes to answer")
        parser.add_argument("--success-rate", type=float, help="share of charges approved, 0 to 1")
        parser.add_argument("--failure-kind", choices=FAILURE_KINDS, help="what a failure is")
        parser.add_argument("--reset", action="store_true", help="drop every override")
        parser.add_argument("--show", action="store_true", help="print the overrides and the behaviour in force")

    def handle(self, *args, **options) -> None:
        changes = {
            "latency_seconds": options["latency"],
            "success_rate": options["success_rate"],
            "failure_kind": options["failure_kind"],
        }
        wants_change = any(value is not None for value in changes.values())
        if options["reset"] and wants_change:
            raise CommandError("--reset cannot be combined with new values")
        if not (wants_change or options["reset"] or options["show"]):
            raise CommandError("nothing to do: give new values, --reset or --show")
        try:
            if options["reset"]:
                payment_faults_reset()
                self.stdout.write("payment faults reset: the PAYMENT_MOCK_* settings apply")
            if wants_change:
                payment_faults_set(**changes)
            overrides = payment_faults_overrides()
        except InvalidPaymentFaults as error:
            raise CommandError(str(error)) from error
        except redis.RedisError as error:
            raise CommandError(f"Redis (REDIS_URL) is unreachable, nothing changed: {error}") from error
        payment_faults_cache_clear()
        current = payment_faults_current()
        self.stdout.write(
            json.dumps(
                {
                    "overrides": overrides,
                    "inForce": {
                        "latencySeconds": current.latency_seconds,
                        "successRate": current.success_rate,
                        "failureKind": current.failure_kind,
                    },
                }
            )
        )
