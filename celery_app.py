"""The Celery application; ecommerce/__init__.py re-exports it so shared_task binds."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ecommerce.settings.local")

app = Celery("ecommerce")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
