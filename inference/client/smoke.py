"""Check a running deployment end to end, the way a caller meets it: one command for a runbook's "is it up and
right?" after a rollout, in staging or in production.

    python -m inference.client.smoke https://staging.inference.example.com
    python -m inference.client.smoke http://inference-stable --metrics-url http://inference-stable:3000/metrics

Checks, each printed as a line with its outcome and time:
- `/health` answers ok, and lists the families served (those loaded are checked below, with those `--families`
  names: behind one host, a deployment of one unit per family answers /health from one of its units);
- each loaded family answers a real request through its public route: skills scores a student with every feature at
  its imputation default on the first served skill, intent classifies a query (classic and
  ensemble: an ensemble answer that fell back to classic is a failure), text pair compares two
  texts;
- the canary header: the first family's request again with `X-Canary: always` and `X-Canary: never`, both
  answered, and the model versions each gave (the same when no canary runs);
- `--metrics-url`: Prometheus' view, reachable from where this runs (inside the cluster: the pods' port 3000 is not
  behind the public edge) and holding the service's request counter.

Exit status 0 when every check passed, 1 when one failed (the line says which and why), 2 on bad arguments.
Needs only the client's dependencies (`pip install inference[client]`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from inference.client.errors import InferenceClientError
from inference.client.sync import InferenceClient

CANARY_HEADER = "X-Canary"
METRIC_EXPECTED = "inference_requests_total"
QUERY = "how do I reset my password"
PAIR = ("How do I reset my password?", "How can I change my password?")


@dataclass(frozen=True)
class Outcome:
    check: str
    passed: bool
    detail: str
    seconds: float


class Smoke:
    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        timeout_s: float,
        metrics_url: str | None,
        families: Sequence[str] = (),
    ) -> None:
        self.url = url
        self.named = list(families)  # checked whatever /health lists
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout_s = timeout_s
        self.metrics_url = metrics_url
        self.outcomes: list[Outcome] = []
        self.families: list[str] = []  # loaded, as /health says

    def run(self) -> list[Outcome]:
        self._check("health", self._health)
        first: Callable[[InferenceClient], str] | None = None
        for family in self.families:
            calls = self._family_calls(family)
            for name, call in calls:
                self._check(name, lambda call=call: self._with_client(None, call))
            if first is None and calls:
                first = calls[0][1]
        if first is not None:
            self._check("canary header", lambda: self._canary(first))
        if self.metrics_url:
            self._check("metrics", self._metrics)
        return self.outcomes

    def _check(self, name: str, check: Callable[[], object]) -> object:
        started = time.perf_counter()
        try:
            result = check()
        except (InferenceClientError, httpx.HTTPError, AssertionError, ValueError) as err:
            self._record(name, False, f"{type(err).__name__}: {err}", started)
            return None
        detail = result if isinstance(result, str) else ""
        self._record(name, True, detail, started)
        return result

    def _record(self, name: str, passed: bool, detail: str, started: float) -> None:
        outcome = Outcome(name, passed, detail, time.perf_counter() - started)
        self.outcomes.append(outcome)
        mark = "ok  " if passed else "FAIL"
        print(f"{mark} {name:<22} {outcome.seconds * 1000:7.1f} ms  {detail}", flush=True)

    def _client(self, canary: str | None) -> InferenceClient:
        headers = {**self.headers, **({CANARY_HEADER: canary} if canary else {})}
        return InferenceClient(self.url, timeout_s=self.timeout_s, headers=headers)

    def _with_client(self, canary: str | None, call: Callable[[InferenceClient], str]) -> str:
        client = self._client(canary)
        try:
            return call(client)
        finally:
            client.close()

    def _health(self) -> str:
        with self._client(None) as client:
            health = client.health()
        self.families = [family.family for family in health.families if family.loaded]
        self.families += [family for family in self.named if family not in self.families]
        missing = [family.family for family in health.families if not family.loaded]
        if health.status != "ok":
            raise AssertionError(f"status {health.status!r}; families not loaded: {missing}")
        return f"families served: {', '.join(self.families) or 'none'}"

    def _family_calls(self, family: str) -> list[tuple[str, Callable[[InferenceClient], str]]]:
        if family == "skills":
            return [("skills infer", _skill)]
        if family == "intent":
            return [("intent classic", _classic), ("intent ensemble", _ensemble)]
        if family == "textpair":
            return [("textpair predict", _pair)]
        return []  # a family of a plug-in: no request this command knows how to make

    def _canary(self, call: Callable[[InferenceClient], str]) -> str:
        always = self._with_client("always", call)
        never = self._with_client("never", call)
        return f"always: {always}; never: {never}"

    def _metrics(self) -> str:
        assert self.metrics_url is not None
        response = httpx.get(self.metrics_url, headers=self.headers, timeout=self.timeout_s)
        response.raise_for_status()
        if METRIC_EXPECTED not in response.text:
            raise AssertionError(f"{self.metrics_url} answered without {METRIC_EXPECTED}")
        return f"{len(response.text.splitlines())} lines"


def _skill(client: InferenceClient) -> str:
    models = client.skill_models().models
    if not models:
        raise AssertionError("no skill model is served")
    model = models[0]
    features = {feature.name: feature.imputation_default for feature in model.features}
    result = client.infer_skill("smoke-test-student", model.skill, features)
    return f"{result.skill} {result.model_version}: score {result.score:.3f}"


def _classic(client: InferenceClient) -> str:
    result = client.classify(QUERY, variant="classic")
    return f"{result.variant} {result.model_version}: {result.intent}"


def _ensemble(client: InferenceClient) -> str:
    result = client.classify_ensemble(QUERY)
    if result.fallback:
        raise AssertionError(
            f"answered by {result.variant} in the ensemble's place (fallback: {result.fallback_reason or 'no reason'})"
        )
    return f"{result.variant} {result.model_version}: {result.intent}"


def _pair(client: InferenceClient) -> str:
    result = client.predict_pair(*PAIR)
    return f"{result.model.version}: {result.label}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.client.smoke",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", help="the deployment's base URL, e.g. https://staging.inference.example.com")
    parser.add_argument("--metrics-url", help="where Prometheus scrapes the service (checked when given)")
    parser.add_argument("--token", help="a bearer token, when the edge asks for one")
    parser.add_argument("--timeout-s", type=float, default=10.0, help="per request (10)")
    parser.add_argument(
        "--families",
        nargs="+",
        default=[],
        help="families to check besides those /health lists (a deployment of one unit per family: skills intent "
        "textpair)",
    )
    args = parser.parse_args(argv)
    outcomes = Smoke(
        args.url, token=args.token, timeout_s=args.timeout_s, metrics_url=args.metrics_url, families=args.families
    ).run()
    failed = [outcome.check for outcome in outcomes if not outcome.passed]
    print(
        f"{len(outcomes) - len(failed)} of {len(outcomes)} checks passed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed or not outcomes else 0


if __name__ == "__main__":
    sys.exit(main())
