"""The Django project package and the top floor.

Wires the apps together: settings, urls, wsgi, the admin site and the
resilience overview, health, metrics and the platform's state figures. It
imports the apps and `core`; no app imports it. (`celery_app.py`, beside
manage.py, is imported here so that `shared_task` binds to it.)
"""
from celery_app import app as celery_app

__all__ = ("celery_app",)
