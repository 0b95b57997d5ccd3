"""Planted defects (core/planted.py) are for the soak checker's tests: only the test settings take them.

Each settings module is loaded in a fresh process with `PLANTED_DEFECTS` in
its environment, as a platform process would be started.
"""
import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings

from core.planted import COMMIT_OFFSET_BEFORE_DATABASE, DROP_OUTBOX_ROW, SKIP_PROCESSED_EVENT_CHECK, planted
from tests.support import ROOT

PRINT_DEFECTS = "import django; django.setup(); from django.conf import settings; print(sorted(settings.PLANTED_DEFECTS))"


def _start(module: str, **env: str) -> subprocess.CompletedProcess:
    base = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "PLANTED_"))}
    environment = {
        "DJANGO_SETTINGS_MODULE": f"ecommerce.settings.{module}",
        "DJANGO_READ_DOTENV": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "testserver",
        "DATABASE_URL": os.environ.get("DATABASE_URL", ""),
    }
    return subprocess.run(
        [sys.executable, "-c", PRINT_DEFECTS], cwd=ROOT, env={**base, **environment, **env}, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


@pytest.mark.parametrize("module", ["production", "local"])
def test_settings_other_than_the_tests_refuse_a_planted_defect(module):
    refused = _start(module, PLANTED_DEFECTS=DROP_OUTBOX_ROW)

    assert refused.returncode != 0
    assert f"PLANTED_DEFECTS plants defects for the soak checker's tests only; the {module} settings refuse it" in refused.stderr
    # the same settings without it start (the refusal above fails for that reason only)
    assert _start(module).returncode == 0


def test_the_test_settings_take_known_defects_and_refuse_unknown_ones():
    taken = _start("test", PLANTED_DEFECTS=f"{SKIP_PROCESSED_EVENT_CHECK},{COMMIT_OFFSET_BEFORE_DATABASE}")
    unknown = _start("test", PLANTED_DEFECTS="skip-the-tests")

    assert taken.returncode == 0, taken.stderr
    assert taken.stdout.strip() == str(sorted([COMMIT_OFFSET_BEFORE_DATABASE, SKIP_PROCESSED_EVENT_CHECK]))
    assert unknown.returncode != 0 and "unknown defects ['skip-the-tests']" in unknown.stderr


def test_nothing_is_planted_unless_asked_for():
    assert settings.PLANTED_DEFECTS == frozenset()
    assert not any(planted(name) for name in (SKIP_PROCESSED_EVENT_CHECK, COMMIT_OFFSET_BEFORE_DATABASE, DROP_OUTBOX_ROW))
