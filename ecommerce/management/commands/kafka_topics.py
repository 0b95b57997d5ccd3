from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from messaging.kafka.admin import topics_check, topics_ensure


class Command(BaseCommand):
    help = (
        "Create the Kafka topics of docs/contract.md that do not exist yet, with their configured partitions (idempotent), "
        "and report any topic whose partition count differs."
    )

    def handle(self, *args, **options) -> None:
        try:
            created = topics_ensure(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS)
            mismatches = topics_check(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS)
        except Exception as error:  # report, do not trace back, on an unreachable broker
            raise CommandError(f"Kafka at {settings.KAFKA_BOOTSTRAP_SERVERS} is not reachable: {error!r}") from error
        self.stdout.write(f"created: {', '.join(created) or 'none (all exist)'}")
        for mismatch in mismatches:
            # Logged as an error by topics_ensure; repeated here for whoever runs the command.
            self.stderr.write(
                f"topic {mismatch.name}: expected {mismatch.expected} partitions, found {mismatch.actual}"
            )
