"""The suite's Redis databases are named once, and every value derived from them follows."""
import json
import subprocess
import sys

import redis
from django.conf import settings

from celery_app import app
from resilience.policies import breaker_for
from tests.support import ROOT


def _settings_in_a_fresh_process(**env: str) -> dict:
    """The test settings as a plain `pytest` would load them, with the given environment."""
    script = (
        "import json, django; django.setup(); from django.conf import settings as s; from celery_app import app; "
        "print(json.dumps({'redis': s.REDIS_URL, 'breakers': s.RESILIENCE_REDIS_URL, "
        "'cache': s.CACHES['default']['LOCATION'], 'celery': s.CELERY_BROKER_URL, 'celery_app': app.conf.broker_url}))"
    )
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "ecommerce.settings.test", "DATABASE_URL": "postgres://x@127.0.0.1/x"}
    output = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def test_a_platform_redis_url_in_the_environment_does_not_reach_the_suite():
    loaded = _settings_in_a_fresh_process(
        REDIS_URL="redis://127.0.0.1:6379/0", RESILIENCE_REDIS_URL="redis://127.0.0.1:6379/0", CELERY_BROKER_URL="redis://127.0.0.1:6379/1"
    )

    assert loaded == {
        "redis": "redis://127.0.0.1:6379/15",
        "breakers": "redis://127.0.0.1:6379/15",
        "cache": "redis://127.0.0.1:6379/15",
        "celery": "redis://127.0.0.1:6379/14",
        "celery_app": "redis://127.0.0.1:6379/14",  # Celery prefers the environment: it was made to agree
    }


def test_the_suite_urls_are_taken_from_the_test_variables_and_followed_by_derived_values():
    loaded = _settings_in_a_fresh_process(
        TEST_REDIS_URL="redis://127.0.0.1:6390/9", TEST_CELERY_BROKER_URL="redis://127.0.0.1:6390/8"
    )

    assert loaded == {
        "redis": "redis://127.0.0.1:6390/9",
        "breakers": "redis://127.0.0.1:6390/9",
        "cache": "redis://127.0.0.1:6390/9",
        "celery": "redis://127.0.0.1:6390/8",
        "celery_app": "redis://127.0.0.1:6390/8",
    }


def test_the_suite_breaker_keys_live_in_the_suite_redis_database():
    key = "circuit-breaker:kafkaPublisher"
    suite = redis.Redis.from_url(settings.REDIS_URL)
    platform = redis.Redis.from_url(settings.REDIS_URL.rsplit("/", 1)[0] + "/0")
    try:
        assert suite.get(key) is None  # wiped before every test
        platform_before = platform.get(key)
        breaker = breaker_for("kafkaPublisher")

        breaker.record_outcomes(breaker.acquire(), successes=0, failures=1)

        assert suite.get(key) is not None
        assert platform.get(key) == platform_before  # the platform's database 0 was not touched
        assert settings.REDIS_URL.rsplit("/", 1)[1] != "0"
    finally:
        suite.close()
        platform.close()


def test_celery_sends_the_suite_tasks_to_the_suite_broker():
    assert app.conf.broker_url == settings.CELERY_BROKER_URL
    assert settings.CELERY_BROKER_URL.rsplit("/", 1)[1] not in ("0", "1")
