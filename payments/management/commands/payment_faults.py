import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from payments.client import InvalidFaults, PaymentProviderUnavailable, provider_faults

# Each option and the provider's fault field it sets (ops/payment_provider/faults.py).
OPTIONS = {
    "latency": "latency_seconds",
    "decline_rate": "decline_rate",
    "error_rate": "error_rate",
    "hang_rate": "hang_rate",
    "reset_after_charge_rate": "reset_after_charge_rate",
    "late_answer_rate": "late_answer_rate",
    "late_answer_seconds": "late_answer_seconds",
    "seed": "seed",
}


class Command(BaseCommand):
    help = (
        "Change the payment provider's faults at run time (PAYMENT_PROVIDER_URL's /_faults, the fake provider only): "
        "give new values (the others stay as they are), --reset (no faults), or --show."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--latency", type=float, help="seconds the provider waits before handling a charge or refund")
        parser.add_argument("--decline-rate", type=float, help="share of charges declined, 0 to 1")
        parser.add_argument("--error-rate", type=float, help="share answered 502/503 without charging")
        parser.add_argument("--hang-rate", type=float, help="share never answered until the client goes, no charge")
        parser.add_argument("--reset-after-charge-rate", type=float, help="share charged, then the connection reset")
        parser.add_argument("--late-answer-rate", type=float, help="share charged, then answered --late-answer-seconds later")
        parser.add_argument("--late-answer-seconds", type=float, help="how late a late answer comes")
        parser.add_argument("--seed", type=int, help="make the provider's draws reproducible")
        parser.add_argument("--reset", action="store_true", help="no faults at all")
        parser.add_argument("--show", action="store_true", help="print the faults in force")

    def handle(self, *args, **options) -> None:
        changes = {field: options[option] for option, field in OPTIONS.items() if options[option] is not None}
        if options["reset"] and changes:
            raise CommandError("--reset cannot be combined with new values")
        if not (changes or options["reset"] or options["show"]):
            raise CommandError("nothing to do: give new values, --reset or --show")
        try:
            if options["reset"]:
                faults = provider_faults(reset=True)
            elif changes:
                # The provider's PUT replaces the whole switch: keep what is not named.
                faults = provider_faults(replace={**provider_faults(), **changes})
            else:
                faults = provider_faults()
        except InvalidFaults as error:
            raise CommandError(f"the provider refused the faults, nothing changed: {error}") from error
        except PaymentProviderUnavailable as error:
            raise CommandError(f"the payment provider at {settings.PAYMENT_PROVIDER_URL} is unreachable: {error}") from error
        self.stdout.write(json.dumps({"provider": settings.PAYMENT_PROVIDER_URL, "faults": faults}))
