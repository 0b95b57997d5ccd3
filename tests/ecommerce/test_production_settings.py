"""Production settings and the container stack: no public secret, guarded operations pages, HTTPS, check --deploy.

Each check runs the settings for real in a fresh interpreter (settings are read
once per process), against the suite's test database.
"""
import json
import os
import re
import secrets
import subprocess
import sys
import textwrap

import pytest
import requests
import yaml

from tests.servers import ROOT, database_url, free_port, server_process

pytestmark = pytest.mark.django_db

# The key ecommerce/settings/local.py fell back to before: public in the repository's history.
OLD_DEVELOPMENT_KEY = "local-development-only-not-a-secret-0123456789"
SECRET_HINT = "secrets.token_urlsafe(50)"

# Prints what the tests assert on, as JSON: tokens, /metrics, HTTPS.
PROBE = textwrap.dedent(
    """
    import json
    from datetime import timedelta

    import django
    django.setup()

    import jwt
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone
    from rest_framework_simplejwt.authentication import JWTAuthentication
    from rest_framework_simplejwt.exceptions import InvalidToken
    from rest_framework_simplejwt.tokens import AccessToken

    def accepted(raw):
        try:
            JWTAuthentication().get_validated_token(raw.encode())
            return True
        except InvalidToken:
            return False

    user = get_user_model().objects.create(username="probe-manager", is_superuser=True)
    claims = {"token_type": "access", "user_id": str(user.pk), "jti": "probe", "exp": timezone.now() + timedelta(minutes=5)}
    forged = jwt.encode(claims, OLD_KEY, algorithm="HS256")
    client = Client()
    metrics = lambda **extra: client.get("/metrics", secure=True, **extra)
    plain = client.get("/api/v1/categories")
    over_https = client.get("/api/v1/categories", HTTP_X_FORWARDED_PROTO="https")
    result = {
        "settings": settings.SETTINGS_MODULE,
        "forged_accepted": accepted(forged),
        "own_accepted": accepted(str(AccessToken.for_user(user))),
        "forged_api_status": client.get(
            "/api/v1/orders", HTTP_AUTHORIZATION="Bearer " + forged, HTTP_X_FORWARDED_PROTO="https"
        ).status_code,
        "metrics_anonymous": [metrics(REMOTE_ADDR="203.0.113.9").status_code, metrics(REMOTE_ADDR="203.0.113.9")["Content-Type"]],
        "metrics_wrong_token": metrics(REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer nope").status_code,
        "metrics_token": metrics(REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer " + METRICS_TOKEN).status_code,
        "metrics_network": metrics(REMOTE_ADDR="10.1.2.3").status_code,
        "http_redirect": [plain.status_code, plain.get("Location")],
        "https_status": over_https.status_code,
        "hsts": over_https.get("Strict-Transport-Security"),
        "health_over_http": client.get("/health/live").status_code,
    }
    user.delete()
    print("PROBE" + json.dumps(result))
    """
)


def run_python(code: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    base = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "METRICS_", "JWT_"))}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=timeout
    )


def probe(env: dict[str, str]) -> dict:
    metrics_token = secrets.token_urlsafe(32)
    code = f"OLD_KEY = {OLD_DEVELOPMENT_KEY!r}\nMETRICS_TOKEN = {metrics_token!r}\n" + PROBE
    completed = run_python(code, {"METRICS_BEARER_TOKEN": metrics_token, **env})
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = next(line for line in completed.stdout.splitlines() if line.startswith("PROBE"))
    return json.loads(line.removeprefix("PROBE"))


def production_env(**overrides: str) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "ecommerce.settings.production",
        # Not the checkout's .env: scripts/run.sh writes a secret there.
        "DJANGO_READ_DOTENV": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "testserver",
        "DATABASE_URL": database_url(),
        "METRICS_ALLOWED_NETWORKS": "10.0.0.0/8",
        **overrides,
    }


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def interpolate(value: str, environment: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}`; a missing required one raises."""

    def substitute(match: re.Match) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        if environment.get(name):
            return environment[name]
        if operator == ":?":
            raise LookupError(argument)
        return argument if operator == ":-" else ""

    return re.sub(r"\$\{(\w+)(?:(:\?|:-)([^}]*))?\}", substitute, value)


class TestProductionSettings:
    def test_a_token_signed_with_the_old_development_key_is_rejected(self):
        # when
        result = probe(production_env())

        # then the forgery is refused, and a token of the deployment's own key works (the check can fail)
        assert result["settings"] == "ecommerce.settings.production"
        assert result["forged_accepted"] is False
        assert result["own_accepted"] is True
        assert result["forged_api_status"] == 401

    def test_metrics_need_a_bearer_token_or_an_allowed_network(self):
        # when
        result = probe(production_env())

        # then
        assert result["metrics_anonymous"] == [401, "application/problem+json"]
        assert result["metrics_wrong_token"] == 401
        assert result["metrics_token"] == 200
        assert result["metrics_network"] == 200

    def test_https_is_enforced_behind_the_proxy_header_with_hsts(self):
        # when
        result = probe(production_env())

        # then plain HTTP is redirected, HTTPS (as the proxy reports it) is served with HSTS
        assert result["http_redirect"] == [301, "https://testserver/api/v1/categories"]
        assert result["https_status"] == 200
        assert result["hsts"] == "max-age=31536000; includeSubDomains"
        # probes talk to gunicorn directly over HTTP
        assert result["health_over_http"] == 200

    @pytest.mark.parametrize("secret", [None, "", "short", OLD_DEVELOPMENT_KEY])
    def test_refuses_to_start_without_a_proper_secret_and_says_how_to_make_one(self, secret):
        # given
        env = production_env()
        env.pop("DJANGO_SECRET_KEY")
        if secret is not None:
            env["DJANGO_SECRET_KEY"] = secret

        # when
        completed = run_python("import django; django.setup()", env)

        # then
        assert completed.returncode != 0
        assert "DJANGO_SECRET_KEY" in completed.stderr
        assert SECRET_HINT in completed.stderr

    def test_check_deploy_is_clean(self):
        # when
        completed = subprocess.run(
            [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
            cwd=ROOT,
            env={**os.environ, **production_env()},
            capture_output=True,
            text=True,
            timeout=60,
        )

        # then
        assert completed.returncode == 0, completed.stdout + completed.stderr
        assert "System check identified no issues" in completed.stdout


class TestLocalSettings:
    def test_without_a_secret_each_process_gets_a_random_key_and_is_told_how_to_set_one(self):
        # given no secret in the environment (and none in a .env: the variable wins when set, so set it empty)
        env = {"DJANGO_SETTINGS_MODULE": "ecommerce.settings.local", "DJANGO_SECRET_KEY": ""}
        code = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"

        # when
        first, second = run_python(code, env), run_python(code, env)

        # then no fixed key: two processes disagree, and neither is the old public one
        assert first.returncode == 0 and second.returncode == 0, first.stderr
        keys = {first.stdout.strip().splitlines()[-1], second.stdout.strip().splitlines()[-1]}
        assert len(keys) == 2
        assert OLD_DEVELOPMENT_KEY not in keys
        assert SECRET_HINT in first.stderr

    def test_the_old_development_key_is_in_no_settings_module(self):
        # when
        settings_text = "".join(path.read_text() for path in (ROOT / "ecommerce" / "settings").glob("*.py"))

        # then
        assert OLD_DEVELOPMENT_KEY not in settings_text


class TestComposeAndImage:
    def test_app_services_run_production_settings_with_a_required_secret(self):
        # given
        services = compose()["services"]

        # then every service built from the app image runs the production settings, but the fake payment
        # provider: a process of its own with no Django, settings or secret (ops/payment_provider)
        app_services = [
            name for name, service in services.items()
            if service.get("image") == "ecommerce-app:local" and name != "payment-provider"
        ]  # fmt: skip
        assert {"web", "worker", "beat", "flower", "consumer"} <= set(app_services)
        for name in app_services:
            environment = services[name]["environment"]
            assert environment["DJANGO_SETTINGS_MODULE"] == "ecommerce.settings.production", name
            # and the secret has no default: compose refuses to start, saying how to make one
            with pytest.raises(LookupError, match=re.escape(SECRET_HINT)):
                interpolate(environment["DJANGO_SECRET_KEY"], {})

    def test_the_payment_provider_is_a_healthy_service_of_its_own_that_payers_wait_for(self):
        services = compose()["services"]
        provider = services["payment-provider"]

        assert provider["command"][:3] == ["python", "-m", "ops.payment_provider"]
        assert "/health" in " ".join(provider["healthcheck"]["test"])
        assert any(volume.startswith("payment-provider-data:") for volume in provider["volumes"])  # not the database
        for payer in ("consumer", "worker"):
            assert services[payer]["depends_on"]["payment-provider"] == {"condition": "service_healthy"}
            assert services[payer]["environment"]["PAYMENT_PROVIDER_URL"] == "http://payment-provider:8100"

    def test_a_token_signed_with_the_old_development_key_is_rejected_in_composes_environment(self):
        # given web's environment as compose would pass it, with a secret of the operator's own
        environment = compose()["services"]["web"]["environment"]
        given = {"DJANGO_SECRET_KEY": secrets.token_urlsafe(50)}
        env = {name: interpolate(str(value), given) for name, value in environment.items()}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        # the suite's services instead of the compose network's; hosts for the test client
        env.update(DATABASE_URL=database_url(), DJANGO_ALLOWED_HOSTS="testserver")
        for name in ("REDIS_URL", "CELERY_BROKER_URL", "KAFKA_BOOTSTRAP_SERVERS"):
            env[name] = os.environ.get(name, "")
            if not env[name]:
                del env[name]

        # when
        result = probe(env)

        # then
        assert result["settings"] == "ecommerce.settings.production"
        assert result["forged_accepted"] is False
        assert result["own_accepted"] is True

    def test_flower_needs_basic_auth_from_the_environment(self):
        # given
        flower = compose()["services"]["flower"]

        # then compose refuses to start Flower without credentials
        with pytest.raises(LookupError):
            interpolate(flower["environment"]["FLOWER_BASIC_AUTH"], {})

    def test_the_image_runs_production_settings(self):
        # given
        dockerfile = (ROOT / "Dockerfile").read_text()

        # then
        assert "DJANGO_SETTINGS_MODULE=ecommerce.settings.production" in dockerfile
        assert "settings.local" not in dockerfile
        assert "DJANGO_SECRET_KEY=" not in dockerfile.replace('DJANGO_SECRET_KEY="$(python -c', "")

    def test_web_is_reached_through_a_buffering_reverse_proxy(self):
        # given
        services = compose()["services"]
        nginx_conf = (ROOT / "deploy" / "nginx.conf").read_text()

        # then only the proxy publishes the API port, and it buffers whole requests
        assert "ports" not in services["web"]
        assert services["proxy"]["image"].startswith("nginx:")
        assert services["proxy"]["ports"] == ["127.0.0.1:8000:8000"]
        assert services["proxy"]["depends_on"]["web"]["condition"] == "service_healthy"
        assert "proxy_request_buffering on;" in nginx_conf
        assert "client_max_body_size 1m;" in nginx_conf
        assert "location = /metrics" in nginx_conf


class TestFlower:
    def test_flower_asks_for_the_basic_auth_credentials_it_reads_from_the_environment(self):
        # given Flower started as the platform starts it, with FLOWER_BASIC_AUTH set
        port = free_port()
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ecommerce.settings.test", "FLOWER_BASIC_AUTH": "ops:s3cret-pass"}
        command = [sys.executable, "-m", "celery", "-A", "celery_app", "flower", f"--port={port}", "--address=127.0.0.1"]
        base = f"http://127.0.0.1:{port}"
        with server_process(command, env=env, ready_url=f"{base}/healthcheck"):
            # when
            anonymous = requests.get(f"{base}/workers", timeout=5)
            wrong = requests.get(f"{base}/workers", auth=("ops", "guess"), timeout=5)
            right = requests.get(f"{base}/workers", auth=("ops", "s3cret-pass"), timeout=5)

        # then
        assert anonymous.status_code == 401
        assert wrong.status_code == 401
        assert right.status_code == 200
