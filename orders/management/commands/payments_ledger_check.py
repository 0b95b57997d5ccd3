from argparse import ArgumentTypeError
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from orders.ledger import payments_ledger_check
from payments.gateway import PaymentProviderUnavailable

EXIT_MISMATCH = 1
EXIT_PROVIDER_UNAVAILABLE = 2


def _moment(value: str) -> datetime:
    moment = parse_datetime(value)
    if moment is None or moment.tzinfo is None:
        raise ArgumentTypeError(f"not an ISO 8601 date and time with a time zone: {value!r}")
    return moment


class Command(BaseCommand):
    help = (
        "Compare every charge the payment provider holds, net of refunds, with what each order says: its total when "
        "PAID or FULFILLED, nothing otherwise. Prints every mismatch (orders still in payment apart) and a summary; "
        f"exit status {EXIT_MISMATCH} on any mismatch, {EXIT_PROVIDER_UNAVAILABLE} when the provider cannot be asked."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since",
            type=_moment,
            help="only orders created since then (ISO 8601 with a time zone), and charges naming no order made since then",
        )

    def handle(self, *args, **options) -> None:
        try:
            report = payments_ledger_check(since=options["since"])
        except PaymentProviderUnavailable as error:
            raise CommandError(f"the payment provider cannot be asked: {error}", returncode=EXIT_PROVIDER_UNAVAILABLE) from error
        for line in report.lines():
            self.stdout.write(line)
        self.stdout.write(report.summary())
        if report.mismatches:
            raise CommandError(f"{len(report.mismatches)} ledger mismatches", returncode=EXIT_MISMATCH)
