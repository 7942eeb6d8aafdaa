"""The built-in dashboard (`GET /dashboard`): one HTML page, plots drawn as inline SVG, no script and nothing
fetched from elsewhere, so it renders anywhere the service is reachable. Drift covers every worker of the server
(their windows as they last shared them); latencies, cache counts, cost and the go/no-go matrix's cost and stability
are the answering worker's; correlations, accuracy and satisfaction come from the database, as the worker's timer
last computed them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape

from inference.monitoring.cost import Charge
from inference.monitoring.drift import DriftReport
from inference.monitoring.feedback import Accuracy, Decision
from inference.monitoring.gonogo import PROCEED, CriterionScore, Matrix
from inference.monitoring.ground_truth import Correlation
from inference.serving.shadow import Agreement

BAR_WIDTH, CHART_HEIGHT = 22, 120
# How each go/no-go criterion's value, minimum and target read.
CRITERION_FORMATS = {"accuracy": "{:+.1%}", "satisfaction": "{:.1f}/10", "cost": "{:+.0%}", "stability": "{:.2%}"}


def score_chart(title: str, reference: Sequence[float], live: Sequence[float]) -> str:
    """Reference (grey) and live (blue) shares of the score per reference bin, side by side."""
    top = max([*reference, *live, 0.01])
    bars = []
    for index, (expected, actual) in enumerate(zip(reference, live, strict=True)):
        x = 10 + index * (2 * BAR_WIDTH + 8)
        for offset, value, colour in ((0, expected, "#9aa5b1"), (BAR_WIDTH, actual, "#2f6fdf")):
            height = CHART_HEIGHT * value / top
            bars.append(
                f'<rect x="{x + offset}" y="{CHART_HEIGHT - height + 20:.1f}" width="{BAR_WIDTH - 2}" '
                f'height="{height:.1f}" fill="{colour}"><title>{value:.1%}</title></rect>'
            )
    width = 20 + len(reference) * (2 * BAR_WIDTH + 8)
    return (
        f'<figure><svg class="plot" width="{width}" height="{CHART_HEIGHT + 40}" role="img" '
        f'aria-label="{escape(title)}"><text x="10" y="14" font-size="12">{escape(title)}</text>'
        f'<line x1="5" y1="{CHART_HEIGHT + 20}" x2="{width - 5}" y2="{CHART_HEIGHT + 20}" stroke="#333"/>'
        + "".join(bars)
        + "</svg><figcaption>score bins (low to high): grey reference, blue live</figcaption></figure>"
    )


def render_dashboard(
    *,
    drift: Sequence[DriftReport],
    histograms: Mapping[tuple[str, str], tuple[Sequence[float], Sequence[float]]],
    correlations: Sequence[Correlation],
    latencies: Mapping[tuple[str, str], tuple[float, float, int]],
    cache_counts: Mapping[str, Mapping[str, int]],
    psi_alert: float,
    min_observations: int,
    worker: str,
    shadow: Sequence[Agreement] | None = None,
    accuracy: Sequence[Accuracy] = (),
    decisions: Sequence[Decision] = (),
    matrices: Sequence[Matrix] = (),
    costs: Sequence[Charge] | None = None,
) -> str:
    r_by_model: dict[tuple[str, str], list[Correlation]] = {}
    for entry in correlations:  # served first, then nightly (the batch scorer's assessments)
        r_by_model.setdefault((f"skill-{entry.skill}", entry.model_version), []).append(entry)
    sections = []
    for report in drift:
        key = (report.model, report.version)
        chart = score_chart(f"{report.model} {report.version}", *histograms[key]) if key in histograms else ""
        r_text = (
            "; ".join(
                f"{entry.source}: "
                + (
                    f"r = {entry.pearson_r} over {entry.pairs} pairs"
                    if entry.pearson_r is not None
                    else f"{entry.pairs} pairs (too few)"
                )
                for entry in r_by_model[key]
            )
            if key in r_by_model
            else "no ratings yet"
        )
        worst = report.worst_psi()
        psi_text = (
            f'worst PSI <b class="{"alert" if worst > psi_alert else "ok"}">{worst:.3f}</b>'
            if report.psi
            else f"PSI once the window holds {min_observations} observations"
        )
        rows = "".join(
            f"<tr><td>{escape(name)}</td><td>{value:.3f}</td><td>{report.ks.get(name, 0):.3f}</td></tr>"
            for name, value in sorted(report.psi.items(), key=lambda item: -item[1])
        )
        sections.append(
            f'<section class="model"><h2>{escape(report.model)} <small>{escape(report.version)}</small></h2>'
            f"<p>window {report.window} · {psi_text} · correlation with teacher ratings: {escape(r_text)}</p>{chart}"
            f"<details><summary>PSI and KS per input</summary><table><tr><th>input</th><th>PSI</th><th>KS</th></tr>"
            f"{rows}</table></details></section>"
        )
    latency_rows = "".join(
        f"<tr><td>{escape(family)}</td><td>{escape(version)}</td><td>{p50:.2f}</td><td>{p95:.2f}</td><td>{n}</td></tr>"
        for (family, version), (p50, p95, n) in sorted(latencies.items())
    )
    cache_rows = "".join(
        f"<tr><td>{escape(family)}</td><td>{counts.get('hit', 0)}</td><td>{counts.get('miss', 0)}</td>"
        f"<td>{counts.get('hit', 0) / max(counts.get('hit', 0) + counts.get('miss', 0), 1):.1%}</td></tr>"
        for family, counts in sorted(cache_counts.items())
    )
    shadow_rows = "".join(
        f"<tr><td>{escape(pair.family)}</td><td>{escape(pair.primary)}</td><td>{escape(pair.shadow)}</td>"
        f"<td>{pair.compared}</td><td>{pair.mean_abs_diff:.4f}</td><td>{pair.agreement:.1%}</td></tr>"
        for pair in shadow or ()
    )
    shadow_table = (
        "<h2>Shadow traffic: agreement with the version that answered</h2><table><tr><th>family</th>"
        "<th>answered by</th><th>shadow</th><th>compared</th><th>mean |score difference|</th><th>same label</th></tr>"
        f"{shadow_rows}</table>{'' if shadow else '<p>No comparison by this worker yet.</p>'}"
        if shadow is not None
        else ""
    )
    accuracy_rows = "".join(
        f"<tr><td>{escape(entry.family)}</td><td>{escape(entry.model_version)}</td><td>{escape(entry.variant)}</td>"
        f"<td>{entry.items}</td><td>{'too few' if entry.accuracy is None else f'{entry.accuracy:.1%}'}</td>"
        f"<td>{entry.rated}</td><td>{'-' if entry.satisfaction is None else f'{entry.satisfaction:.1f}/10'}</td></tr>"
        for entry in accuracy
    )
    decision_rows = "".join(
        f"<tr><td>{escape(entry.model_version)}</td>"
        f"<td>{'-' if entry.improvement is None else f'{entry.improvement:+.1%}'}</td>"
        f'<td class="{"ok" if entry.decision == "go" else "alert"}">{escape(entry.decision)}</td></tr>'
        for entry in decisions
    )
    accuracy_table = (
        "<h2>Accuracy on labelled feedback</h2><table><tr><th>family</th><th>version</th><th>variant</th>"
        f"<th>items</th><th>accuracy</th><th>rated</th><th>satisfaction</th></tr>{accuracy_rows}</table>"
        + (
            "<p>The ensemble goes to full production when it beats classic by more than "
            f"{decisions[0].required:.0%} on the same items:</p><table><tr><th>version</th><th>ensemble over classic"
            f"</th><th>decision</th></tr>{decision_rows}</table>"
            if decisions
            else ""
        )
        if accuracy
        else "<h2>Accuracy on labelled feedback</h2><p>No labelled feedback in the window yet.</p>"
    )
    empty = "" if sections else "<p>No skill scores observed by this server yet (workers share them every few s).</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>inference dashboard</title>
<style>body{{font-family:sans-serif;margin:24px;color:#222}} section.model{{display:inline-block;vertical-align:top;
margin:0 24px 24px 0;padding:8px 12px;border:1px solid #ddd;border-radius:6px}} table{{border-collapse:collapse}}
td,th{{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}} .alert{{color:#c0392b}} .ok{{color:#1e8449}}
small{{color:#666}}</style></head>
<body><h1>inference</h1><p>{datetime.now(UTC).isoformat(timespec="seconds")} · answered by worker {escape(worker)}
(drift covers every worker of this server; latencies, cache counts and cost are this worker's; correlations and
accuracy come from the database, computed every 15 s) · PSI alert above {psi_alert}</p>
<h2>Latency of successful requests (ms)</h2><table><tr><th>family</th><th>version</th><th>P50</th><th>P95</th>
<th>requests</th></tr>{latency_rows}</table>
<h2>Result cache</h2><table><tr><th>family</th><th>hits</th><th>misses</th><th>hit ratio</th></tr>{cache_rows}</table>
{cost_table(costs)}
{shadow_table}
{accuracy_table}
{matrix_tables(matrices)}
<h2>Scores against the reference, per skill and version</h2>{empty}{"".join(sections)}
</body></html>"""


def cost_table(costs: Sequence[Charge] | None) -> str:
    """What this worker's requests cost since it started, per family and segment (intent: the variant)."""
    if costs is None:
        return ""
    rows = "".join(
        f"<tr><td>{escape(charge.family)}</td><td>{escape(charge.segment) or '-'}</td><td>{charge.requests}</td>"
        f"<td>{per_1k:.3g}</td><td>{1000 * charge.cpu_s / charge.requests:.3f}</td></tr>"
        for charge in costs
        if (per_1k := charge.dollars_per_1k_requests()) is not None
    )
    return (
        "<h2>Cost of this worker's requests since it started</h2><table><tr><th>family</th>"
        "<th>segment (variant, skill)</th><th>requests</th><th>per 1,000 requests</th><th>CPU ms per request</th>"
        f"</tr>{rows}</table>{'' if rows else '<p>No request charged yet (charged once a second).</p>'}"
    )


def matrix_tables(matrices: Sequence[Matrix]) -> str:
    """The go/no-go matrix of each intent version: each criterion against its minimum and target, the total."""
    if not matrices:
        return ""
    tables = []
    for matrix in matrices:
        rows = "".join(_criterion_row(entry) for entry in matrix.criteria)
        total = "-" if matrix.score is None else f"{matrix.score:.3f}"
        tables.append(
            f"<h3>intent {escape(matrix.model_version)}: score {total}, "
            f'<span class="{"ok" if matrix.decision == PROCEED else "alert"}">{escape(matrix.decision)}</span></h3>'
            "<table><tr><th>criterion</th><th>measured</th><th>minimum</th><th>target</th><th>weight</th>"
            f"<th>score</th></tr>{rows}</table>"
        )
    return (
        "<h2>Go/no-go matrix of the ensemble</h2><p>The ensemble proceeds to full production when the weighted "
        f"score is above {matrices[0].proceed_above}; a criterion without data leaves the decision at not enough "
        "data. Accuracy and satisfaction come from the labelled feedback; cost and stability are this worker's, "
        "since it started.</p>" + "".join(tables)
    )


def _criterion_row(entry: CriterionScore) -> str:
    shown = CRITERION_FORMATS.get(entry.name, "{:g}")
    value = "no data" if entry.value is None else shown.format(entry.value)
    score = "-" if entry.score is None else f"{entry.score:.2f}"
    return (
        f"<tr><td>{escape(entry.name)}</td><td>{value}</td><td>{shown.format(entry.minimum)}</td>"
        f"<td>{shown.format(entry.target)}</td><td>{entry.weight:.0%}</td><td>{score}</td></tr>"
    )
