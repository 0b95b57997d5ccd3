"""The alert rules: valid, unit-tested per alert with promtool, each pointing at its runbook section."""
import re
import shutil
import subprocess

import pytest
import yaml

from tests.support import ROOT

PROMETHEUS = ROOT / "ops" / "prometheus"
RUNBOOK = ROOT / "docs" / "runbook.md"


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: scripts/test.sh installs Debian's prometheus package"
    return path


def test_rules_pass_promtool_check(promtool):
    result = subprocess.run([promtool, "check", "rules", str(PROMETHEUS / "alerts.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_unit_test_passes(promtool):
    files = sorted(str(path) for path in (PROMETHEUS / "tests").glob("*.yml"))
    result = subprocess.run([promtool, "test", "rules", *files], capture_output=True, text=True, cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_stays_silent():
    tested: dict[str, set[str]] = {}
    for path in (PROMETHEUS / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case["alert_rule_test"]:
                tested.setdefault(check["alertname"], set()).add("fires" if check.get("exp_alerts") else "silent")
    for rule in alert_rules():
        assert tested.get(rule["alert"]) == {"fires", "silent"}, rule["alert"]


def test_the_required_alerts_exist_with_severity_summary_and_a_runbook_anchor_that_exists():
    required = {
        "OutboxBacklogStale", "OutboxRowsFailed", "CircuitBreakerOpen", "DeadLettersArriving",
        "OrderConsumerLagging", "OrdersStuck", "PeriodicJobStale", "PaymentFailuresHigh", "ApiServerErrors",
    }  # fmt: skip
    rules = alert_rules()
    assert required <= {rule["alert"] for rule in rules}
    # GitHub's anchors: headings lower-cased, punctuation dropped, spaces to dashes.
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    }
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert path == "docs/runbook.md" and anchor in anchors, rule["alert"]
