"""Monitoring configuration that no engine here runs: checked with promtool and by reading it.

Docker is not available on the machines that run this suite, so compose's
Prometheus, Alertmanager and Grafana are validated as files: the Prometheus
configurations by promtool, the dashboard's queries as PromQL by promtool,
compose's monitoring services and their mounts by reading compose.yaml.
"""
import json
import shutil
import subprocess

import pytest
import yaml

from tests.support import ROOT

OPS = ROOT / "ops"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: scripts/test.sh installs Debian's prometheus package"
    return path


def test_the_run_commands_prometheus_configuration_is_valid_once_rendered(promtool, tmp_path):
    template = (OPS / "prometheus" / "prometheus.local.yml").read_text()
    rendered = tmp_path / "prometheus.yml"
    for placeholder, value in (("@ROOT@", str(ROOT)), ("@WEB_PORT@", "8000"), ("@PROMETHEUS_PORT@", "9090"),
                               ("@ALERTMANAGER_PORT@", "9093")):  # fmt: skip
        template = template.replace(placeholder, value)
    assert "@" not in template.replace("alerts.yml", "")
    rendered.write_text(template)

    result = subprocess.run([promtool, "check", "config", str(rendered)], capture_output=True, text=True)

    assert result.returncode == 0, result.stdout + result.stderr


def test_composes_prometheus_configuration_is_valid(promtool):
    # --syntax-only: its rule file path exists inside the container only.
    result = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(OPS / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_query_is_valid_promql(promtool, tmp_path):
    dashboard = json.loads((OPS / "grafana" / "dashboards" / "resilience.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(queries) >= 15
    # promtool parses PromQL only inside rule files: one recording rule per query.
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query_{index}", "expr": query}
                                                          for index, query in enumerate(queries)]}]}  # fmt: skip
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))

    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)

    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_prometheus_alertmanager_and_grafana_with_health_checks_and_existing_files():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    for name in ("prometheus", "alertmanager", "grafana"):
        service = services[name]
        assert service["healthcheck"]["test"], name
        assert service["restart"] == "unless-stopped", name
        for volume in service["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    assert "./ops/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in services["prometheus"]["volumes"]
    datasource = yaml.safe_load((OPS / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
