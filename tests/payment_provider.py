"""The fake payment provider (ops/payment_provider) as a real process for tests, and its fault switch.

The `payment_provider` fixture (tests/conftest.py) is where every payment
test gets it: one process per xdist worker (session scope), with a store of
its own in the worker's temporary directory, faults reset around each test.
Tests stay independent by their keys (each order id is new), not by a fresh
ledger.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.services import _die_with_parent, free_port

ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 15.0


class PaymentProvider:
    """`python -m ops.payment_provider` on a free port of its own, with the given sqlite store."""

    def __init__(self, *, store: Path, log_path: Path | None = None) -> None:
        self.store = store
        self.log_path = log_path or store.with_suffix(".log")
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.http = httpx.Client(base_url=self.url, timeout=10.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "PaymentProvider":
        command = [sys.executable, "-m", "ops.payment_provider", "--listen", f"127.0.0.1:{self.port}", "--store", str(self.store)]
        with open(self.log_path, "ab") as log:
            # preexec_fn only calls prctl (as tests/services.py does for its servers), so it is safe after fork.
            self.process = subprocess.Popen(
                command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )  # fmt: skip
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the payment provider exited on start: {self.log_path.read_text()[-2000:]}")
            try:
                if self.http.get("/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        pytest.fail(f"the payment provider did not answer /health on {self.url} within {START_SECONDS:.0f}s")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM (SIGCONT first, in case a test paused it), then SIGKILL if it lingers."""
        if self.running():
            os.killpg(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def kill(self) -> None:
        if self.running():
            self.process.kill()
            self.process.wait(timeout=10)

    def pause(self) -> None:
        """Freeze the process: connections are accepted by the kernel, nothing is answered."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        self.http.close()

    # The fault switch (PUT replaces every field; the rest go back to 0) ------------------------

    def faults(self, **fields: Any) -> dict[str, Any]:
        response = self.http.put("/_faults", json=fields)
        assert response.status_code == 200, response.text
        return response.json()

    def faults_reset(self) -> None:
        response = self.http.delete("/_faults")
        assert response.status_code == 200, response.text

    # The ledger, as the provider holds it -----------------------------------------------------

    def charges(self, idempotency_key: str) -> list[dict[str, Any]]:
        """The charges under the key (at most one: the provider's own idempotency)."""
        response = self.http.get("/v1/charges", params={"idempotency_key": idempotency_key})
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def charge(self, idempotency_key: str) -> dict[str, Any] | None:
        charges = self.charges(idempotency_key)
        return charges[0] if charges else None

    def last_charge_id(self) -> str | None:
        """The newest charge's id, any status: a watermark from which a test lists only its own charges."""
        last, cursor = None, ""
        while True:
            response = self.http.get("/v1/charges", params={"starting_after": cursor, "limit": 1000, "status": "all"})
            body = response.json()
            if body["data"]:
                last = cursor = body["data"][-1]["id"]
            if not body["has_more"]:
                return last
