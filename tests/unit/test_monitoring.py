"""Monitoring: process metrics on /metrics, alert rules (promtool), dashboard, docker compose, drift workflow."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from image_classifier.checkpoint import save_bundle
from tests.helpers.bundles import make_bundle
from tests.helpers.tools import missing
from tests.serve.conftest import png_bytes, start_server, stop_server

REPO_ROOT = Path(__file__).resolve().parents[2]
MONITORING = REPO_ROOT / "deploy" / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "image-classifier.json"
COMPOSE = REPO_ROOT / "deploy" / "docker-compose.yaml"
DRIFT_WORKFLOW = REPO_ROOT / ".github" / "workflows" / "drift.yml"
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless"}
# Series that Prometheus itself adds to every scrape.
SCRAPE_SERIES = {"up"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    return set(re.findall(r"(?<![\w$.])[A-Za-z_:][\w:]*\b(?!\s*\()", expr)) - PROMQL_WORDS


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("promtool")
    if executable is None:
        missing("promtool")
    return subprocess.run([executable, *args], cwd=MONITORING, capture_output=True, text=True, timeout=120)


def test_alert_rules_and_scrape_config_are_valid() -> None:
    rules = promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases = [
        case
        for test in yaml.safe_load((MONITORING / "alerts.test.yml").read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    for rule in alert_rules():
        outcomes = {bool(case["exp_alerts"]) for case in cases if case["alertname"] == rule["alert"]}
        assert outcomes == {True, False}, rule["alert"]


def test_metric_names_reads_selectors_not_functions_or_labels() -> None:
    expr = 'histogram_quantile(0.99, sum by (le) (rate(ic_x_bucket{path="/a b"}[5m]))) / on () up offset 1h > bool 1'
    assert metric_names(expr) == {"ic_x_bucket", "up"}


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real server's /metrics text after a prediction and a rejected upload, and the server's process id."""
    bundle = make_bundle(["circle", "square", "star"])
    workdir = tmp_path_factory.mktemp("monitoring")
    server = start_server(save_bundle(workdir / "best.pt", bundle), workdir, IC_MODEL_PROCESS="false")
    try:
        with server.client() as http:
            assert http.post("/predict", files={"file": ("a.png", png_bytes(), "image/png")}).status_code == 200
            assert http.post("/predict", files={"file": ("b.png", b"", "image/png")}).status_code == 400
            yield http.get("/metrics").text, server.process.pid
    finally:
        stop_server(server)


def exported(text: str) -> dict[str, float]:
    """Every sample name of a /metrics text, with its last value."""
    return {sample.name: sample.value for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_carry_the_server_process_cpu_memory_and_open_files(scrape: tuple[str, int]) -> None:
    text, pid = scrape
    samples = exported(text)
    assert samples["process_cpu_seconds_total"] > 0
    assert samples["process_open_fds"] >= 3
    resident = psutil.Process(pid).memory_info().rss
    assert 0.5 < samples["process_resident_memory_bytes"] / resident < 2


def test_dashboard_queries_only_what_the_api_exports_and_covers_every_ic_metric(scrape: tuple[str, int]) -> None:
    samples = set(exported(scrape[0]))
    used = set().union(*map(metric_names, dashboard_exprs()))
    assert used - samples - SCRAPE_SERIES == set()
    shown = ("ic_", "process_cpu", "process_resident", "process_open")
    families = {family.name for family in text_string_to_metric_families(scrape[0])}
    for family in sorted(name for name in families if name.startswith(shown) and not name.endswith("_created")):
        assert any(name.startswith(family) for name in used), f"the dashboard does not show {family}"


def test_alert_rules_query_only_what_the_api_exports(scrape: tuple[str, int]) -> None:
    used = set().union(*(metric_names(rule["expr"]) for rule in alert_rules()))
    assert used - set(exported(scrape[0])) - SCRAPE_SERIES == set()


def test_grafana_provisioning_matches_the_dashboard_and_compose() -> None:
    provisioning = MONITORING / "grafana" / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    uids = {
        target["datasource"]["uid"]
        for panel in json.loads(DASHBOARD.read_text())["panels"]
        for target in panel.get("targets", [])
    }
    assert uids == {source["uid"]}
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "image-classifier.yml").read_text())["providers"]
    grafana = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    assert f"./monitoring/grafana/dashboards:{provider['options']['path']}:ro" in grafana["volumes"]


def compose_command() -> list[str]:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return [docker, "compose"]
    if legacy := shutil.which("docker-compose"):
        return [legacy]
    missing("docker-compose")


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path to host path of a service's bind mounts, from either compose's short or long syntax."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        if source.startswith("/"):
            found[target] = source
    return found


def test_docker_compose_file_parses_and_mounts_the_monitoring_configs() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MODEL_", "COMPOSE_"))}
    env["GRAFANA_ADMIN_PASSWORD"] = "test-password"
    result = subprocess.run(
        [*compose_command(), "-f", str(COMPOSE), "config"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"api", "prometheus", "grafana"} <= set(services)
    assert services["api"]["build"]["dockerfile"] == "dockerfiles/api.Dockerfile"
    assert (Path(services["api"]["build"]["context"]) / "dockerfiles" / "api.Dockerfile").is_file()
    assert mounts(services["api"])["/app/models"] == str(REPO_ROOT / "models")
    prometheus = mounts(services["prometheus"])
    assert prometheus["/etc/prometheus/prometheus.yml"] == str(MONITORING / "prometheus.yml")
    assert prometheus["/etc/prometheus/alerts.yml"] == str(MONITORING / "alerts.yml")
    grafana = mounts(services["grafana"])
    assert grafana["/etc/grafana/provisioning"] == str(MONITORING / "grafana" / "provisioning")
    scrape_config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape_config["static_configs"][0]["targets"] == ["api:8000"]


def test_drift_workflow_runs_on_a_schedule_and_opens_an_issue_on_drift() -> None:
    workflow = yaml.safe_load(DRIFT_WORKFLOW.read_text())
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the bare key `on` as True
    assert on["schedule"][0]["cron"]
    assert workflow["permissions"]["issues"] == "write"
    job = workflow["jobs"]["drift"]
    assert "vars.PREDICTION_LOG" in job["env"]["PREDICTION_LOG"]
    steps = {step.get("name", step.get("uses", "")): step for step in job["steps"]}
    assert "invoke drift --log" in steps["invoke drift"]["run"]
    assert "drift_detected" in steps["invoke drift"]["run"]
    opener = steps["Open an issue"]
    assert opener["uses"].startswith("actions/github-script@")
    assert "issues.create(" in opener["with"]["script"]
    assert opener["if"] == steps["Fail on drift"]["if"] == "steps.drift.outputs.drifted == 'True'"
    assert "exit 1" in steps["Fail on drift"]["run"]


def test_grafana_has_no_default_admin_password_and_listens_on_this_machine_only() -> None:
    grafana = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    password = grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert password.startswith("${GRAFANA_ADMIN_PASSWORD:?"), "compose must refuse to start without a password"
    assert all(str(port).startswith("127.0.0.1:") for port in grafana["ports"])
