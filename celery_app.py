"""The Celery application; ecommerce/__init__.py re-exports it so shared_task binds."""
import os

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ecommerce.settings.local")

app = Celery("ecommerce")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _drop_unusable_connections(sender=None, **kwargs) -> None:
    """Keep connections across tasks (CELERY_DB_REUSE_MAX), but never a broken or expired one."""
    if sender is not None and getattr(sender.request, "is_eager", False):
        return  # run in the caller's process and transaction, as Celery's own fixup does
    from django.db import close_old_connections

    close_old_connections()
