"""Writes grafana-dashboard.json: `python k8s/monitoring/dashboard.py`. The panels are data here so that a test
can check every query against the metrics the service exports."""

from __future__ import annotations

import json
from pathlib import Path

PANELS = [
    (
        "Requests per second by version",
        "timeseries",
        "reqps",
        ["sum by (family, model_version) (rate(inference_requests_total[1m]))"],
    ),
    ("P95 latency by version", "timeseries", "s", ["inference:request_duration_seconds:p95_5m"]),
    (
        "Accuracy on labelled feedback by version and variant (intent, text pair)",
        "timeseries",
        "percentunit",
        ["inference_feedback_accuracy"],
    ),
    (
        "P95 latency by endpoint, skill and intent variant",
        "timeseries",
        "s",
        ["inference:request_duration_seconds_by_endpoint:p95_5m"],
    ),
    ("Errors by code", "timeseries", "reqps", ["sum by (family, code) (rate(inference_errors_total[5m]))"]),
    ("Server error ratio by version", "timeseries", "percentunit", ["inference:error_ratio:rate5m"]),
    ("Cache hit ratio", "timeseries", "percentunit", ["inference:cache_hit_ratio:rate5m"]),
    (
        "Fallback answers",
        "timeseries",
        "reqps",
        ["sum by (family, model_version, reason) (rate(inference_fallbacks_total[5m]))"],
    ),
    ("Traffic share by version", "timeseries", "percentunit", ["inference_route_weight"]),
    (
        "Score distribution (skills)",
        "heatmap",
        "short",
        ['sum by (le) (rate(inference_prediction_score_bucket{family="skills"}[5m]))'],
    ),
    (
        "Drift: PSI per model, version and input",
        "timeseries",
        "short",
        ["max by (model, model_version, feature) (inference_drift_psi)"],
    ),
    ("Correlation with teacher ratings", "timeseries", "short", ["inference_rating_correlation"]),
    (
        "Shadow: mean |score difference| with the version that answered",
        "timeseries",
        "short",
        [
            "sum by (family, model_version, shadow_version) (rate(inference_shadow_abs_score_difference_total[15m]))"
            " / sum by (family, model_version, shadow_version) (rate(inference_shadow_comparisons_total[15m]))"
        ],
    ),
    (
        "Shadow: same label as the version that answered",
        "timeseries",
        "percentunit",
        [
            "sum by (family, model_version, shadow_version) (rate(inference_shadow_label_agreements_total[15m]))"
            " / sum by (family, model_version, shadow_version) (rate(inference_shadow_comparisons_total[15m]))"
        ],
    ),
    ("Cost per 1,000 requests by family and segment", "timeseries", "currencyUSD", ["inference_cost_per_1k_requests"]),
    (
        # Beside the cost: what the same family and segment (skill, intent variant) answer in, at three quantiles.
        "P50, P95 and P99 latency by family and segment",
        "timeseries",
        "s",
        [
            (
                f"histogram_quantile({q}, sum by (family, segment, le) (rate(inference_request_duration_seconds_bucket[5m])))",
                f"{{{{family}}}} {{{{segment}}}} {name}",
            )
            for q, name in (("0.5", "P50"), ("0.95", "P95"), ("0.99", "P99"))
        ],
    ),
    (
        "CPU-seconds per request by family and segment",
        "timeseries",
        "s",
        [
            "sum by (family, segment) (rate(inference_cost_cpu_seconds_total[5m]))"
            " / sum by (family, segment) (rate(inference_cost_requests_total[5m]))"
        ],
    ),
    (
        "Memory (GiB-seconds) per request by family and segment",
        "timeseries",
        "short",
        [
            "sum by (family, segment) (rate(inference_cost_memory_gib_seconds_total[5m]))"
            " / sum by (family, segment) (rate(inference_cost_requests_total[5m]))"
        ],
    ),
    (
        "Idle cost (served nothing) per hour",
        "timeseries",
        "currencyUSD",
        ["3600 * sum(rate(inference_cost_idle_dollars_total[5m]))"],
    ),
    (
        "Batch size (rows per model call)",
        "timeseries",
        "short",
        ["histogram_quantile(0.5, sum by (family, le) (rate(inference_batch_size_bucket[5m])))"],
    ),
]


def query_target(n: int, query: str | tuple[str, str]) -> dict[str, object]:
    """A panel's `n`th query; a (query, legend) pair names its series."""
    expr, legend = query if isinstance(query, tuple) else (query, None)
    return {
        "refId": chr(ord("A") + n),
        "expr": expr,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        **({"legendFormat": legend} if legend else {}),
    }


def dashboard() -> dict[str, object]:
    panels = []
    for index, (title, kind, unit, queries) in enumerate(PANELS):
        panels.append(
            {
                "id": index + 1,
                "title": title,
                "type": kind,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [query_target(n, query) for n, query in enumerate(queries)],
            }
        )
    return {
        "title": "Inference",
        "uid": "inference-service",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "tags": ["inference"],
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}]
        },
        "panels": panels,
    }


if __name__ == "__main__":
    target = Path(__file__).with_name("grafana-dashboard.json")
    target.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {target}")
