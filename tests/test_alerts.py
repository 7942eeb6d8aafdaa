"""Every alert of k8s/monitoring/prometheusrule.yaml, unit-tested with `promtool test rules` on synthetic series:
it fires when it should (with the labels an on-call needs) and stays silent when it should not. The thresholds
are read from the objectives and settings the rules are generated from, not copied here. Each alert's runbook_url
names a heading of docs/troubleshooting.md."""

import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from inference.families.registry import cache_hit_ratios, latency_objectives
from inference.monitoring.objectives import AVAILABILITY, BATCH_LATE_AFTER_H, BATCH_SLOWER_THAN_USUAL
from inference.settings import Settings
from tests.utils.prometheus import promtool
from tests.utils.servers import PROJECT_ROOT

RULES = PROJECT_ROOT / "k8s" / "monitoring" / "prometheusrule.yaml"
DOCS = PROJECT_ROOT / "docs"
LE = ["0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "+Inf"]


def run_promtool(tmp_path: Path, tests: list[dict]) -> subprocess.CompletedProcess[str]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": yaml.safe_load(RULES.read_text())["spec"]["groups"]}))
    spec = tmp_path / "test.yaml"
    spec.write_text(yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "30s", "tests": tests}))
    return subprocess.run([promtool(), "test", "rules", str(spec)], capture_output=True, text=True)


def histogram(labels: str, seconds: float, per_minute: int = 600) -> list[dict]:
    """Requests that all took `seconds`: cumulative bucket counters growing by `per_minute` a minute."""
    series = []
    for le in LE:
        inside = le == "+Inf" or float(le) >= seconds
        series.append(
            {
                "series": f'inference_request_duration_seconds_bucket{{{labels},le="{le}"}}',
                "values": f"0+{per_minute if inside else 0}x60",
            }
        )
    return series


def requests(labels: str, ok_per_minute: int, errors_per_minute: int) -> list[dict]:
    return [
        {"series": f'inference_requests_total{{{labels},outcome="ok"}}', "values": f"0+{ok_per_minute}x480"},
        {
            "series": f'inference_requests_total{{{labels},outcome="server_error"}}',
            "values": f"0+{errors_per_minute}x480",
        },
    ]


def firing(alertname: str, at: str, *alerts: dict[str, str]) -> dict:
    """At `at`, exactly these alerts of `alertname` are firing, each with exactly these labels (read from the
    ALERTS series, so the annotations' rendered values need not be spelled out here)."""
    samples = []
    for labels in alerts:
        every = {"alertname": alertname, "alertstate": "firing", **labels}
        text = ",".join(f'{name}="{value}"' for name, value in sorted(every.items()) if value != "")
        samples.append({"labels": f"ALERTS{{{text}}}", "value": 1})
    return {"expr": f'ALERTS{{alertname="{alertname}",alertstate="firing"}}', "eval_time": at, "exp_samples": samples}


def fires(alertname: str, at: str, labels: dict[str, str]) -> dict:
    return firing(alertname, at, labels)


def silent(alertname: str, at: str) -> dict:
    return firing(alertname, at)


def check(tmp_path: Path, tests: list[dict]) -> None:
    result = run_promtool(tmp_path, tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_each_latency_objective_fires_over_its_own_target_and_not_over_another(tmp_path):
    """Single and batch requests no longer share one histogram: a 50 ms batch does not fire the 5 ms alert."""
    tests = []
    for objective in latency_objectives():
        target = objective.p95_ms / 1000
        segment = objective.segment or ("communication" if objective.family == "skills" else "")
        labels = f'family="{objective.family}",endpoint="{objective.endpoint}",segment="{segment}",model_version="v1"'
        expected = {
            "severity": "warning",
            "objective": objective.name,
            "family": objective.family,
            "endpoint": objective.endpoint,
            "segment": segment,
        }
        slow = next(float(le) for le in LE[:-1] if float(le) > target)  # the next bucket above the target
        tests.append(
            {
                "interval": "1m",
                "input_series": histogram(labels, slow),
                "promql_expr_test": [fires("InferenceLatencyAboveObjective", "20m", expected)],
            }
        )
        fast = max(float(le) for le in LE[:-1] if float(le) <= target / 2)
        tests.append(
            {
                "interval": "1m",
                "input_series": histogram(labels, fast),
                "promql_expr_test": [silent("InferenceLatencyAboveObjective", "20m")],
            }
        )
    # A batch at 50 ms fires the batch objective (20 ms) and nothing else: each objective reads its own endpoint.
    batch = 'family="skills",endpoint="batch",segment="mixed",model_version="v1"'
    tests.append(
        {
            "interval": "1m",
            "input_series": histogram(batch, 0.05),
            "promql_expr_test": [
                fires(
                    "InferenceLatencyAboveObjective",
                    "20m",
                    {
                        "severity": "warning",
                        "objective": "skills/batch",
                        "family": "skills",
                        "endpoint": "batch",
                        "segment": "mixed",
                    },
                )
            ],
        }
    )
    check(tmp_path, tests)


def test_the_error_budget_burn_alerts_fire_on_a_fast_burn_and_not_within_the_budget(tmp_path):
    budget = 1 - AVAILABILITY
    labels = 'family="skills",endpoint="single",segment="communication",model_version="v1"'
    burning = round(20 * budget * 1000)  # 20x the budget: past both burn rates (14.4x, 6x)
    tests = [
        {
            "interval": "1m",
            "input_series": requests(labels, 1000 - burning, burning),
            "promql_expr_test": [
                firing(
                    "InferenceErrorBudgetBurn",
                    "2h",
                    {"severity": "critical", "window": "1h"},
                    {"severity": "warning", "window": "6h"},
                ),
            ],
        },
        {
            "interval": "1m",
            "input_series": requests(labels, 1000, round(0.5 * budget * 1000)),  # half the budget's rate
            "promql_expr_test": [silent("InferenceErrorBudgetBurn", "7h")],
        },
    ]
    check(tmp_path, tests)


def test_the_cache_hit_ratio_alert_holds_each_family_to_its_own_requirement(tmp_path):
    tests = []
    for family, ratio in cache_hit_ratios().items():
        below, above = ratio - 0.1, min(ratio + 0.1, 0.99)
        for share, alerting in ((below, True), (above, False)):
            hits = round(share * 100)
            series = [
                {
                    "series": f'inference_cache_requests_total{{family="{family}",model_version="v1",outcome="hit"}}',
                    "values": f"0+{hits}x90",
                },
                {
                    "series": f'inference_cache_requests_total{{family="{family}",model_version="v1",outcome="miss"}}',
                    "values": f"0+{100 - hits}x90",
                },
            ]
            expected = {"severity": "info", "objective": f"cache/{family}", "family": family}
            rule = fires("InferenceCacheHitRatioLow", "45m", expected) if alerting else None
            tests.append(
                {
                    "interval": "1m",
                    "input_series": series,
                    "promql_expr_test": [rule or silent("InferenceCacheHitRatioLow", "45m")],
                }
            )
    # 70% is fine for intent (>= 60%) and an alert for skills (> 80%).
    check(tmp_path, tests)


def test_the_model_alerts_fire_at_the_settings_thresholds(tmp_path):
    settings = Settings()
    low, high = settings.correlation_alert_below - 0.1, settings.correlation_alert_below + 0.1
    drifted, steady = settings.drift_psi_alert + 0.1, settings.drift_psi_alert / 2
    model = 'model="skill-creativity",model_version="v1",source="served"'
    pairs = settings.correlation_min_pairs
    tests = [
        {
            "interval": "1m",
            "input_series": [
                {"series": f"inference_rating_correlation{{{model}}}", "values": f"{low}x90"},
                {"series": f"inference_rating_pairs{{{model}}}", "values": f"{pairs}x90"},
                {"series": f'inference_drift_psi{{{model},feature="novel_idea_count"}}', "values": f"{drifted}x60"},
                {"series": "inference_control_store_up", "values": "0x20"},
            ],
            "promql_expr_test": [
                fires(
                    "InferenceRatingCorrelationLow",
                    "70m",
                    {"severity": "critical", "model": "skill-creativity", "model_version": "v1", "source": "served"},
                ),
                fires(
                    "InferenceDriftHigh",
                    "40m",
                    {
                        "severity": "warning",
                        "model": "skill-creativity",
                        "model_version": "v1",
                        "feature": "novel_idea_count",
                    },
                ),
                fires("InferenceControlStoreUnreachable", "10m", {"severity": "warning"}),
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                {"series": f"inference_rating_correlation{{{model}}}", "values": f"{high}x90"},
                {"series": f"inference_rating_pairs{{{model}}}", "values": f"{pairs}x90"},
                # A low r on too few pairs is not evidence.
                {
                    "series": 'inference_rating_correlation{model="skill-x",model_version="v1",source="nightly"}',
                    "values": f"{low}x90",
                },
                {
                    "series": 'inference_rating_pairs{model="skill-x",model_version="v1",source="nightly"}',
                    "values": f"{pairs - 1}x90",
                },
                # ...nor beside another source's many pairs: each source is judged on its own pairs.
                {
                    "series": 'inference_rating_pairs{model="skill-x",model_version="v1",source="served"}',
                    "values": "500x90",
                },
                {"series": f'inference_drift_psi{{{model},feature="novel_idea_count"}}', "values": f"{steady}x60"},
                {"series": "inference_control_store_up", "values": "1x20"},
            ],
            "promql_expr_test": [
                silent("InferenceRatingCorrelationLow", "70m"),
                silent("InferenceDriftHigh", "40m"),
                silent("InferenceControlStoreUnreachable", "10m"),
            ],
        },
    ]
    check(tmp_path, tests)


def test_the_accuracy_floor_alert_fires_for_a_variant_under_80_percent_on_enough_feedback(tmp_path):
    items = Settings().feedback_min_items
    ensemble = 'family="intent",model_version="v1",variant="ensemble"'
    classic = 'family="intent",model_version="v1",variant="classic"'
    few = 'family="textpair",model_version="v1",variant="default"'
    tests = [
        {
            "interval": "1m",
            "input_series": [
                {"series": f"inference_feedback_accuracy{{{ensemble}}}", "values": "0.79x60"},
                {"series": f"inference_feedback_items{{{ensemble}}}", "values": f"{items}x60"},
                {"series": f"inference_feedback_accuracy{{{classic}}}", "values": "0.80x60"},  # at the floor: fine
                {"series": f"inference_feedback_items{{{classic}}}", "values": "5000x60"},
                {"series": f"inference_feedback_accuracy{{{few}}}", "values": "0.5x60"},  # too few items to judge
                {"series": f"inference_feedback_items{{{few}}}", "values": f"{items - 1}x60"},
            ],
            "promql_expr_test": [
                fires(
                    "InferenceAccuracyBelowFloor",
                    "40m",
                    {"severity": "critical", "family": "intent", "model_version": "v1", "variant": "ensemble"},
                ),
                silent("InferenceAccuracyBelowFloor", "20m"),
            ],
        }
    ]
    check(tmp_path, tests)


def test_the_nightly_batch_alerts_fire_when_it_failed_is_late_or_slow(tmp_path):
    # promtool's clock starts at 0 (1970): a success at t=0 is "late" once evaluated past the limit.
    late_after_s = BATCH_LATE_AFTER_H * 3600
    usual = 600
    tests = [
        {
            "interval": "1m",
            "input_series": [
                {"series": 'inference_batch_last_run_failed{mode="incremental"}', "values": "1x60"},
                {"series": 'inference_batch_last_success_timestamp_seconds{mode="incremental"}', "values": "0x1800"},
                {"series": 'inference_batch_last_duration_seconds{mode="incremental"}', "values": f"{usual * 2}x60"},
                {"series": 'inference_batch_usual_duration_seconds{mode="incremental"}', "values": f"{usual}x60"},
            ],
            "promql_expr_test": [
                fires("InferenceNightlyBatchFailed", "20m", {"severity": "critical", "mode": "incremental"}),
                fires("InferenceNightlyBatchSlow", "20m", {"severity": "warning", "mode": "incremental"}),
                silent("InferenceNightlyBatchLate", f"{int(late_after_s // 3600) - 1}h"),
                fires(
                    "InferenceNightlyBatchLate",
                    f"{int(late_after_s // 3600) + 1}h",
                    {"severity": "warning", "mode": "incremental"},
                ),
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                {"series": 'inference_batch_last_run_failed{mode="incremental"}', "values": "0x60"},
                {
                    "series": 'inference_batch_last_duration_seconds{mode="incremental"}',
                    "values": f"{usual * BATCH_SLOWER_THAN_USUAL - 1:g}x60",
                },
                {"series": 'inference_batch_usual_duration_seconds{mode="incremental"}', "values": f"{usual}x60"},
            ],
            "promql_expr_test": [
                silent("InferenceNightlyBatchFailed", "20m"),
                silent("InferenceNightlyBatchSlow", "20m"),
            ],
        },
    ]
    check(tmp_path, tests)


def test_the_error_ratio_and_canary_alerts(tmp_path):
    stable = 'family="skills",endpoint="single",segment="communication",model_version="v1"'
    canary = 'family="skills",endpoint="single",segment="communication",model_version="v2"'
    weights = [
        {"series": 'inference_route_weight{family="skills",model_version="v1",role="stable"}', "values": "0.9x40"},
        {"series": 'inference_route_weight{family="skills",model_version="v2",role="canary"}', "values": "0.1x40"},
    ]
    tests = [
        {
            "interval": "1m",
            "input_series": [
                *requests(stable, 1000, 0),
                *requests(canary, 80, 20),  # 20% server errors on the canary: 1.8% of the endpoint
                *weights,
                *histogram(stable, 0.0025),
                *histogram(canary, 0.01),  # 4x stable's P95
            ],
            "promql_expr_test": [
                fires(
                    "InferenceErrorRatioHigh",
                    "20m",
                    {
                        "severity": "critical",
                        "family": "skills",
                        "endpoint": "single",
                        "segment": "communication",
                    },
                ),
                fires(
                    "InferenceCanaryErrorsWorseThanStable",
                    "20m",
                    {"severity": "critical", "family": "skills", "model_version": "v2"},
                ),
                fires(
                    "InferenceCanarySlowerThanStable",
                    "25m",
                    {"severity": "warning", "family": "skills", "model_version": "v2"},
                ),
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                *requests(stable, 1000, 0),
                *requests(canary, 100, 0),
                *weights,
                *histogram(stable, 0.0025),
                *histogram(canary, 0.0025),
            ],
            "promql_expr_test": [
                silent("InferenceErrorRatioHigh", "20m"),
                silent("InferenceCanaryErrorsWorseThanStable", "20m"),
                silent("InferenceCanarySlowerThanStable", "25m"),
            ],
        },
    ]
    check(tmp_path, tests)


def test_every_alert_of_the_rules_is_tested_here():
    alerts = {
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["spec"]["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    source = Path(__file__).read_text()
    assert alerts and all(f'"{alert}"' in source for alert in alerts), alerts


def test_rows_dropped_alert_fires_on_any_row_set_aside_and_names_the_table(tmp_path):
    dropped = 'inference_rows_dropped_total{table="predictions",reason="invalid_row"}'
    tests = [
        {
            "interval": "1m",
            "input_series": [{"series": dropped, "values": "0 0 0 1 1 1 1 1 1 1"}],
            "promql_expr_test": [
                fires(
                    "InferenceRowsDropped",
                    "4m",
                    {"severity": "warning", "table": "predictions", "reason": "invalid_row"},
                )
            ],
        },
        {
            "interval": "1m",
            "input_series": [{"series": dropped, "values": "5+0x30"}],  # an old count, nothing new
            "promql_expr_test": [silent("InferenceRowsDropped", "25m")],
        },
    ]
    check(tmp_path, tests)


def test_the_shedding_alert_fires_past_one_percent_of_requests_shed_and_not_below(tmp_path):
    def series(shed_per_minute):
        labels = 'family="textpair",endpoint="single",segment="",model_version="v1"'
        return [
            *requests(labels, 1000 - shed_per_minute, shed_per_minute),
            {
                "series": 'inference_limit_rejections_total{family="textpair",limit="queue_wait"}',
                "values": f"0+{shed_per_minute}x480",
            },
        ]

    tests = [
        {
            "interval": "1m",
            "input_series": series(50),  # 5% shed
            "promql_expr_test": [fires("InferenceShedding", "30m", {"severity": "warning", "family": "textpair"})],
        },
        {
            "interval": "1m",
            "input_series": series(2),  # 0.2%
            "promql_expr_test": [silent("InferenceShedding", "30m")],
        },
    ]
    check(tmp_path, tests)


def test_the_guard_alert_fires_when_the_guard_lowers_a_share_and_clears_half_an_hour_later(tmp_path):
    acted = 'inference_guard_actions_total{family="intent",segment="ensemble",reason="latency"}'
    expected = {"severity": "warning", "family": "intent", "segment": "ensemble", "reason": "latency"}
    tests = [
        {
            "interval": "1m",
            "input_series": [{"series": acted, "values": "0 0 0 1+0x60"}],  # exported at 0, one action at 3m
            "promql_expr_test": [
                fires("InferenceEnsembleGuardActed", "4m", expected),
                silent("InferenceEnsembleGuardActed", "40m"),
            ],
        },
        {
            "interval": "1m",
            "input_series": [{"series": acted, "values": "0+0x60"}],  # a guard that never acted
            "promql_expr_test": [silent("InferenceEnsembleGuardActed", "30m")],
        },
    ]
    check(tmp_path, tests)


def test_the_cost_alert_fires_for_the_segment_whose_thousand_requests_cost_over_the_ceiling(tmp_path):
    ceiling = Settings().ensemble_guard_cost_per_1k

    def costing(segment: str, per_1k: float) -> list[dict]:
        """600 requests a minute of intent's `segment`, each 1,000 of them charged `per_1k`."""
        labels = f'family="intent",segment="{segment}"'
        return [
            {"series": f"inference_cost_requests_total{{{labels}}}", "values": "0+600x60"},
            {"series": f"inference_cost_dollars_total{{{labels}}}", "values": f"0+{0.6 * per_1k:g}x60"},
        ]

    tests = [
        {
            "interval": "1m",
            "input_series": [*costing("ensemble", 3 * ceiling), *costing("classic", ceiling / 10)],
            "promql_expr_test": [
                fires(
                    "InferenceCostAboveCeiling",
                    "30m",
                    {"severity": "warning", "family": "intent", "segment": "ensemble"},
                )
            ],
        },
        {
            "interval": "1m",
            "input_series": costing("ensemble", ceiling / 2),
            "promql_expr_test": [silent("InferenceCostAboveCeiling", "30m")],
        },
    ]
    check(tmp_path, tests)


def heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file: lower case, punctuation dropped but hyphens and
    underscores, spaces as hyphens, `-1`, `-2`, ... after a repeated one; headings inside fenced code skipped."""
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.DOTALL | re.MULTILINE)
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", prose, flags=re.MULTILINE):
        anchor = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(f"{anchor}-{seen[anchor]}" if anchor in seen else anchor)
        seen[anchor] = seen.get(anchor, 0) + 1
    return anchors


def test_every_alert_links_the_section_of_the_runbook_headed_by_its_name():
    """A renamed or deleted heading in docs/troubleshooting.md fails this, as the on-call's link would break."""
    anchors = heading_anchors((DOCS / "troubleshooting.md").read_text())
    groups = yaml.safe_load(RULES.read_text())["spec"]["groups"]
    alerts = [rule for group in groups for rule in group["rules"] if "alert" in rule]
    assert alerts
    for alert in alerts:
        url = urlsplit(alert["annotations"]["runbook_url"])
        assert url.scheme == "https" and url.path.endswith("/docs/troubleshooting.md"), alert["alert"]
        assert url.fragment == alert["alert"].lower() and url.fragment in anchors, alert["alert"]


def test_the_runbooks_links_to_sections_resolve():
    """Every `#anchor` link of docs/troubleshooting.md, to itself or to another file of docs/, names a heading there
    (which also holds heading_anchors to the anchors written by hand)."""
    runbook = (DOCS / "troubleshooting.md").read_text()
    links = re.findall(r"\]\(([\w.-]*)#([\w-]+)\)", runbook)
    assert len(links) >= 10
    broken = [
        f"{file}#{anchor}"
        for file, anchor in links
        if anchor not in heading_anchors((DOCS / (file or "troubleshooting.md")).read_text())
    ]
    assert broken == []
