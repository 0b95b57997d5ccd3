from django.core.management.base import BaseCommand
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from ecommerce.schedules import schedules


class Command(BaseCommand):
    help = "Install or update the periodic jobs in django-celery-beat (idempotent)."

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        for schedule in schedules():
            interval, _ = IntervalSchedule.objects.get_or_create(
                every=schedule.every_seconds, period=IntervalSchedule.SECONDS
            )
            _, created = PeriodicTask.objects.update_or_create(
                name=schedule.name,
                defaults={
                    "task": schedule.task,
                    "interval": interval,
                    "enabled": True,
                    # A run not started by the next one is dropped, so a worker
                    # that was down does not come back to a pile of stale runs.
                    "expire_seconds": schedule.every_seconds,
                },
            )
            self.stdout.write(f"{'created' if created else 'updated'} {schedule.name} every {schedule.every_seconds}s")
