"""`manage.py payment_faults`: the provider's faults switched at run time over HTTP, without restarting anything."""
import io
import json
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from tests.support import ROOT, platform_process_env

NO_FAULTS = {
    "latency_seconds": 0.0, "decline_rate": 0.0, "error_rate": 0.0, "hang_rate": 0.0, "reset_after_charge_rate": 0.0,
    "late_answer_rate": 0.0, "late_answer_seconds": 0.0, "seed": None,
}  # fmt: skip


def command(**options) -> dict:
    out = io.StringIO()
    call_command("payment_faults", stdout=out, **options)
    return json.loads(out.getvalue().splitlines()[-1])


def payment_faults_command(*arguments: str) -> str:
    """`manage.py payment_faults` as an operator runs it: its own process."""
    result = subprocess.run(
        [sys.executable, "manage.py", "payment_faults", *arguments],
        cwd=ROOT, env=platform_process_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


class TestCommand:
    def test_set_show_and_reset(self, payment_provider):
        assert command(show=True) == {"provider": payment_provider.url, "faults": NO_FAULTS}

        command(latency=0.3, decline_rate=0.5, late_answer_rate=0.25, late_answer_seconds=6.0)

        expected = {**NO_FAULTS, "latency_seconds": 0.3, "decline_rate": 0.5, "late_answer_rate": 0.25, "late_answer_seconds": 6.0}
        assert command(show=True)["faults"] == expected
        assert payment_provider.http.get("/_faults").json() == expected  # the provider itself holds them
        command(hang_rate=0.5)  # changes only what it names
        assert command(show=True)["faults"] == {**expected, "hang_rate": 0.5}

        command(reset=True)

        assert command(show=True)["faults"] == NO_FAULTS

    @pytest.mark.parametrize(
        "options,message",
        [
            ({"decline_rate": 1.5}, "decline_rate must be between 0 and 1"),
            ({"latency": -1.0}, "latency_seconds must be between 0 and 3600"),
            ({"error_rate": 0.6, "hang_rate": 0.6}, "must not exceed 1"),
            ({"reset": True, "latency": 1.0}, "cannot be combined"),
            ({}, "nothing to do"),
        ],
    )
    def test_invalid_requests_change_nothing(self, payment_provider, options, message):
        payment_provider.faults(latency_seconds=0.1)
        with pytest.raises(CommandError, match=message):
            call_command("payment_faults", **options)
        assert command(show=True)["faults"] == {**NO_FAULTS, "latency_seconds": 0.1}

    def test_an_unreachable_provider_is_said_plainly(self, payment_provider, settings):
        settings.PAYMENT_PROVIDER_URL = "http://127.0.0.1:9"  # nothing listens there
        with pytest.raises(CommandError, match="payment provider at http://127.0.0.1:9 is unreachable"):
            call_command("payment_faults", latency=1.0)

    def test_an_operator_s_process_changes_the_running_provider(self, payment_provider):
        out = json.loads(payment_faults_command("--error-rate", "0.25", "--seed", "7"))
        assert out["faults"] == {**NO_FAULTS, "error_rate": 0.25, "seed": 7}
        assert payment_provider.http.get("/_faults").json()["error_rate"] == 0.25
        payment_faults_command("--reset")
        assert payment_provider.http.get("/_faults").json() == NO_FAULTS
