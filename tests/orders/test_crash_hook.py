"""The consumer's crash hook (CONSUMER_CRASH_AFTER_DB_COMMIT) is for tests and drills: production refuses it."""
import os
import secrets
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def _setup_production(**env: str) -> subprocess.CompletedProcess:
    base = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "CONSUMER_"))}
    production = {
        "DJANGO_SETTINGS_MODULE": "ecommerce.settings.production",
        "DJANGO_READ_DOTENV": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "testserver",
        "DATABASE_URL": os.environ.get("DATABASE_URL", ""),
    }
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**base, **production, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_settings_refuse_the_crash_hook():
    refused = _setup_production(CONSUMER_CRASH_AFTER_DB_COMMIT="true")
    assert refused.returncode != 0
    assert "CONSUMER_CRASH_AFTER_DB_COMMIT is a test and drill hook" in refused.stderr

    # the same settings without the hook start (the check above can fail for the right reason only)
    assert _setup_production(CONSUMER_CRASH_AFTER_DB_COMMIT="false").returncode == 0


def test_the_hook_is_off_unless_asked_for():
    assert settings.CONSUMER_CRASH_AFTER_DB_COMMIT is False
