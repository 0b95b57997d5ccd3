"""Real server processes for tests: a free port, the test database's URL, a process started and always stopped."""
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from django.conf import settings

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A local port nothing listens on: bound once to pick it, then released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def database_url() -> str:
    """The test database pytest-django created, for another process to use."""
    db = settings.DATABASES["default"]
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@contextmanager
def server_process(command: Sequence[str], *, env: dict[str, str], ready_url: str, timeout: float = 60) -> Iterator[None]:
    """Start `command` in the project root, wait until `ready_url` answers, stop it (SIGTERM, then SIGKILL) afterwards."""
    process = subprocess.Popen(
        list(command), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                pytest.fail(f"{command[2]} exited during start-up: {process.stderr.read()[-2000:]}")
            try:
                requests.get(ready_url, timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    pytest.fail(f"{ready_url} did not answer within {timeout:.0f} s")
                time.sleep(0.2)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=25)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stderr.close()


@contextmanager
def gunicorn_server(**environment: str) -> Iterator[str]:
    """Run gunicorn with gunicorn.conf.py (the run command's and the image's) on a free port; yield its base URL.

    The test settings and the test database; `environment` adds or overrides variables.
    """
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "ecommerce.settings.test",
        "DATABASE_URL": database_url(),
        **environment,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [
        sys.executable, "-m", "gunicorn", "ecommerce.wsgi:application", "--config", "gunicorn.conf.py",
        "--bind", f"127.0.0.1:{port}", "--access-logfile", "/dev/null",
    ]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with server_process(command, env=env, ready_url=f"{base}/health/live"):
        yield base
