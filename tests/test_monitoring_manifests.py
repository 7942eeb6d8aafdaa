"""The PrometheusRule and the Grafana dashboard: valid, current, and asking only for metrics the service
exports (or rules the PrometheusRule records)."""

import json
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from inference.monitoring.cost import GIB, CostMeter, Prices
from inference.monitoring.metrics import (
    GAUGES,
    HttpMetrics,
    PrometheusMetrics,
    count_guard_action,
    count_rows_dropped,
)
from tests.utils.prometheus import promtool
from tests.utils.servers import PROJECT_ROOT

MONITORING = PROJECT_ROOT / "k8s" / "monitoring"


def exported():
    """The sample names the service's /metrics carries, from its own metric definitions: every metric used once,
    then read back from the Prometheus client, so a renamed metric changes them."""
    import prometheus_client

    metrics = PrometheusMetrics()
    metrics.request("skills", "v1", "ok", 0.01)
    metrics.queued("skills", 1)
    edge = HttpMetrics()
    edge.request("/api/v1/skills/infer", "POST", 200, 0.01)
    edge.in_flight("/api/v1/skills/infer", 1)
    edge.scored("skills", "single", "leadership", "v1", "ok", 0.01)
    count_rows_dropped("predictions", "invalid_row")
    count_guard_action("intent", "ensemble", "latency")
    metrics.error("skills", "unknown_skill")
    metrics.limit("skills", "batch_items")
    metrics.shadow("skills", "v1", "v2", compared=1, abs_diff=0.1, agreed=1)
    metrics.score("skills", "skill-leadership", "v1", 0.5)
    metrics.batch("skills", "v1", 8)
    metrics.fallback("intent", "v1", "ensemble_timeout")
    metrics.wanted("intent", "v1", "ensemble", 1)
    metrics.cache("skills", "v1", "hit")
    cost = CostMeter(Prices(cpu_hour=1.0, gib_hour=1.0))
    cost.served("skills", "leadership", 0.01)
    cost.charge()
    ticks = iter([0.0, 1.0])
    idle = CostMeter(Prices(1.0, 1.0), cpu_seconds=lambda: 0.0, resident_bytes=lambda: GIB, clock=lambda: next(ticks))
    idle.charge()  # nothing served: the idle cost
    for name, (_, labels) in GAUGES.items():
        metrics.gauge(name, 1.0, **dict.fromkeys(labels, "x"))
    families = [family for family in prometheus_client.REGISTRY.collect() if family.name.startswith("inference_")]
    unused = [family.name for family in families if not family.samples]
    assert not unused, f"use these metrics in exported() too, or their names stay unknown here: {unused}"
    return {sample.name for family in families for sample in family.samples}


def rule_groups():
    return yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())["spec"]["groups"]


def recorded():
    return {rule["record"] for group in rule_groups() for rule in group["rules"] if "record" in rule}


def names_in(expression):
    return set(re.findall(r"\binference[_:][a-z0-9_:]+", expression))


def test_every_query_of_the_rules_and_the_dashboard_names_an_exported_metric_or_a_recorded_rule():
    known = exported() | recorded()
    expressions = [rule["expr"] for group in rule_groups() for rule in group["rules"]]
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    expressions += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = set().union(*(names_in(expression) for expression in expressions))
    assert used and used <= known, used - known
    alerts = {rule["alert"] for group in rule_groups() for rule in group["rules"] if "alert" in rule}
    assert {
        "InferenceRatingCorrelationLow",
        "InferenceDriftHigh",
        "InferenceLatencyAboveObjective",
        "InferenceErrorBudgetBurn",
        "InferenceErrorRatioHigh",
        "InferenceControlStoreUnreachable",
        "InferenceCacheHitRatioLow",
        "InferenceCanaryErrorsWorseThanStable",
        "InferenceEnsembleGuardActed",
    } <= alerts


def test_the_dashboard_json_is_current_and_well_formed():
    generated = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys; sys.path.insert(0, 'k8s/monitoring'); "
            "import dashboard; print(json.dumps(dashboard.dashboard(), indent=2))",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    stored = (MONITORING / "grafana-dashboard.json").read_text()
    assert json.loads(stored) == json.loads(generated), "stale: run python k8s/monitoring/dashboard.py"
    panels = json.loads(stored)["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels) >= 10
    assert all(panel["targets"] and all(target["expr"] for target in panel["targets"]) for panel in panels)
    titles = " ".join(panel["title"].lower() for panel in panels)
    for topic in (
        "latency",
        "requests per second",
        "errors",
        "cache hit ratio",
        "score distribution",
        "drift",
        "correlation",
    ):
        assert topic in titles, topic


def test_the_rules_are_generated_from_the_settings_and_objectives_and_current():
    generated = subprocess.run(
        [sys.executable, "-c", "import k8s.monitoring.rules as r; print(r.render(), end='')"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (MONITORING / "prometheusrule.yaml").read_text() == generated, "stale: run python k8s/monitoring/rules.py"


def test_promtool_accepts_the_rules(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups()}))
    result = subprocess.run([promtool(), "check", "rules", str(rules)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_the_monitoring_kustomization_renders_the_rule_the_pod_monitor_and_the_dashboard_configmap():
    rendered = subprocess.run(
        ["kubectl", "kustomize", "k8s/monitoring"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout
    kinds = {doc["kind"]: doc for doc in yaml.safe_load_all(rendered)}
    assert set(kinds) == {"PrometheusRule", "ConfigMap", "PodMonitor"}
    assert kinds["ConfigMap"]["metadata"]["labels"]["grafana_dashboard"] == "1"
