from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ecommerce.kafka.client import topics_ensure


class Command(BaseCommand):
    help = "Create the Kafka topics of SPEC.md that do not exist yet (idempotent)."

    def handle(self, *args, **options) -> None:
        try:
            created = topics_ensure(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS)
        except Exception as error:  # report, do not trace back, on an unreachable broker
            raise CommandError(f"Kafka at {settings.KAFKA_BOOTSTRAP_SERVERS} is not reachable: {error!r}") from error
        self.stdout.write(f"created: {', '.join(created) or 'none (all exist)'}")
