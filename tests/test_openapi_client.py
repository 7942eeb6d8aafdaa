"""The OpenAPI document at /docs.json lists every route the service answers, with its request, answers and error
statuses; a client generated from it by a standard generator (openapi-python-client) calls every route of a real
server, admin and Open Inference Protocol included, and parses every answer into the document's models."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from tests.utils.clock import iso_ago
from tests.utils.requests import RATINGS_AUTH, student_items
from tests.utils.servers import RunningServer, start_server

pytestmark = [pytest.mark.server, pytest.mark.slow]

ADMIN_TOKEN = "openapi-admin-token-0123456789"
PACKAGE = "generated_inference_client"
GENERATOR = Path(sys.executable).with_name("openapi-python-client")


@pytest.fixture(scope="module")
def server(trained_versions, text_reports, session_dir) -> Iterator[RunningServer]:
    """Every family, the admin API on, the ensemble given time to answer on a busy machine."""
    env = {
        "INFERENCE_SKILLS_VERSION": "v1.0.0",
        "INFERENCE_ADMIN_TOKEN": ADMIN_TOKEN,
        "INFERENCE_INTENT_ENSEMBLE_BUDGET_MS": "10000",
    }
    with start_server(session_dir / "logs-openapi", env=env) as running:
        yield running


@pytest.fixture(scope="module")
def document(server) -> dict[str, Any]:
    return httpx.get(server.url + "/docs.json", timeout=30).json()


@pytest.fixture(scope="module")
def generated(document, server, tmp_path_factory) -> Any:
    """The client package openapi-python-client generates from the live document, imported."""
    folder = tmp_path_factory.mktemp("generated")
    spec = folder / "docs.json"
    spec.write_text(json.dumps(document))
    run = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(spec), "--output-path", str(folder / PACKAGE), "--meta", "none"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": f"{GENERATOR.parent}:{os.environ['PATH']}"},  # its post-hooks run ruff
    )
    assert run.returncode == 0, run.stdout + run.stderr
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))


def test_the_document_lists_every_mounted_route_and_every_api(document):
    import service

    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    mounted = {
        (method, route.path)
        for route in service.extra_routes.routes
        if isinstance(route, Route) and route.path != "/docs.json"
        for method in route.methods or ()
        if method != "HEAD"
    }
    apis = {("POST", api.route) for api in service.Inference.apis.values()}
    assert mounted | apis <= documented, sorted((mounted | apis) - documented)
    assert len(documented) >= 37


def test_every_operation_documents_its_errors_in_the_api_shape(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            where = f"{method.upper()} {path}"
            assert {"200", "503", "504"} <= statuses, where
            if "requestBody" in operation:
                assert {"400", "413", "415"} <= statuses, where
            if path.startswith(
                ("/admin", "/api/v1/cache", "/api/v1/monitoring/ratings", "/api/v1/monitoring/feedback")
            ):
                assert {"401", "403"} <= statuses, where
            for status in ("413", "415", "504"):
                if status in statuses:
                    schema = operation["responses"][status]["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (where, status)
    assert set(document["components"]["schemas"]["ErrorBody"]["properties"]) == {"error", "code"}


def body_type(function: Callable[..., Any]) -> Any:
    """The generated model a function takes as its body: the first choice of its `body` annotation (a string
    where the generated module postpones its annotations)."""
    annotation = inspect.signature(function).parameters["body"].annotation
    if isinstance(annotation, str):
        first = annotation.split("|")[0].strip()
        return getattr(importlib.import_module(f"{PACKAGE}.models"), first)
    return next(choice for choice in (*typing.get_args(annotation), annotation) if hasattr(choice, "from_dict"))


def test_a_generated_client_calls_every_route_of_a_real_server(generated, server):
    from generated_inference_client import AuthenticatedClient, Client

    plain = Client(base_url=server.url, timeout=httpx.Timeout(60), raise_on_unexpected_status=True)
    admin = AuthenticatedClient(base_url=server.url, token=ADMIN_TOKEN, timeout=httpx.Timeout(60))
    writer = AuthenticatedClient(base_url=server.url, token=RATINGS_AUTH["Authorization"].split()[-1])
    item = student_items(1, seed=5, skills=("creativity",))[0]
    names = httpx.get(f"{server.url}/v2/models/skill-creativity").json()["parameters"]["feature_names"]
    skills_row = [item["features"].get(name) for name in names]  # null: missing, imputed
    texts = ["dentist near me", "cheap flights to lisbon"]
    tensor_text = {"name": "text", "datatype": "BYTES", "shape": [2], "data": texts}
    change = httpx.put(
        f"{server.url}/admin/routes/skills",
        json={"weights": {"v1.0.0": 100}},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=60,
    )
    operation_id = change.json()["operation"]["id"]  # a change leaves an operation to read back
    calls: dict[str, tuple[Any, dict[str, Any]]] = {
        # The scoring and feedback APIs.
        "inference_skills_infer": (plain, {"body": item}),
        "inference_skills_infer_batch": (plain, {"body": {"items": [item, item]}}),
        "inference_classify": (plain, {"body": {"text": texts[0]}}),
        "inference_classify_ensemble": (plain, {"body": {"text": texts[0]}}),
        "inference_classify_batch": (plain, {"body": {"texts": texts}}),
        "inference_predict": (plain, {"body": {"text1": "a cat sat", "text2": "a cat was sitting"}}),
        "inference_post_ratings": (
            writer,
            {
                "body": {
                    "ratings": [{"student_id": "s-1", "skill": "creativity", "rating": 4, "rated_at": iso_ago(hours=1)}]
                }
            },
        ),
        "inference_post_intent_feedback": (writer, {"body": {"items": [{"text": texts[0], "intent": "local"}]}}),
        "inference_post_textpair_feedback": (
            writer,
            {"body": {"items": [{"text1": "a cat sat", "text2": "a cat was sitting", "same": True}]}},
        ),
        # The reads.
        "get_api_v1_skills_models": (plain, {}),
        "get_api_v1_models": (plain, {}),
        "get_model_info": (plain, {}),
        "get_health": (plain, {}),
        "get_api_v1_monitoring_drift": (plain, {}),
        "get_api_v1_monitoring_correlation": (plain, {}),
        "get_api_v1_monitoring_accuracy": (plain, {}),
        "get_dashboard": (plain, {}),
        "get_healthz": (plain, {}),
        "get_livez": (plain, {}),
        "get_readyz": (plain, {}),
        "get_metrics": (plain, {}),
        # The admin API: changes that leave the server as it was.
        "get_admin_routes": (admin, {}),
        "put_admin_routes_family": (admin, {"family": "skills", "body": {"weights": {"v1.0.0": 100}}}),
        "post_admin_routes_family_rollback": (admin, {"family": "skills"}),
        "post_admin_models_reload": (admin, {"body": {"family": "textpair", "version": "v1.0.0"}}),
        "put_admin_intent_ensemble": (admin, {"body": {"enabled": True}}),
        "put_admin_intent_groups": (admin, {"body": {"groups": {"smoke": []}}}),  # an empty group: no member
        "get_admin_audit": (admin, {"limit": 5}),
        "get_admin_operations_operation_id": (admin, {"operation_id": operation_id}),
        "delete_api_v1_cache_students_student_id": (admin, {"student_id": "s-1"}),
        # The Open Inference Protocol.
        "get_v2": (plain, {}),
        "get_v2_health_live": (plain, {}),
        "get_v2_health_ready": (plain, {}),
        "get_v2_models_name": (plain, {"name": "intent-classic"}),
        "get_v2_models_name_versions_version": (plain, {"name": "skill-creativity", "version": "v1.0.0"}),
        "get_v2_models_name_ready": (plain, {"name": "textpair"}),
        "get_v2_models_name_versions_version_ready": (plain, {"name": "intent-ensemble", "version": "v1.0.0"}),
        "post_v2_models_name_infer": (
            plain,
            {"name": "intent-classic", "body": {"id": "r-1", "inputs": [tensor_text]}},
        ),
        "post_v2_models_name_versions_version_infer": (
            plain,
            {
                "name": "skill-creativity",
                "version": "v1.0.0",
                "body": {
                    "inputs": [{"name": "features", "datatype": "FP64", "shape": [1, len(names)], "data": skills_row}]
                },
            },
        ),
    }
    api = importlib.import_module(f"{PACKAGE}.api")
    generated_operations = {
        module.name: importlib.import_module(f"{PACKAGE}.api.{tag.name}.{module.name}")
        for tag in pkgutil.iter_modules(api.__path__)
        for module in pkgutil.iter_modules([str(Path(api.__path__[0]) / tag.name)])
    }
    assert set(generated_operations) == set(calls), set(generated_operations) ^ set(calls)
    for name, module in sorted(generated_operations.items()):
        client, arguments = calls[name]
        if "body" in arguments:
            arguments = {**arguments, "body": body_type(module.sync_detailed).from_dict(arguments["body"])}
        response = module.sync_detailed(client=client, **arguments)
        assert response.status_code == 200, (name, response.status_code, response.content[:500])
        if name not in ("get_dashboard", "get_metrics", "get_healthz", "get_livez", "get_readyz"):
            assert response.parsed is not None and hasattr(response.parsed, "to_dict"), name  # a document model
    answer = generated_operations["post_v2_models_name_infer"].sync(
        client=plain,
        name="textpair",
        body=body_type(generated_operations["post_v2_models_name_infer"].sync_detailed).from_dict(
            {"inputs": [{**tensor_text, "name": "text1"}, {**tensor_text, "name": "text2"}]}
        ),
    )
    assert [output.name for output in answer.outputs] == ["prediction", "label", "confidence"]
    missing = generated_operations["get_v2_models_name"].sync_detailed(client=plain, name="skill-nope")
    assert missing.status_code == 404 and "unknown model" in missing.parsed.error
    unauthorized = generated_operations["get_admin_routes"].sync_detailed(client=plain)
    assert unauthorized.status_code == 401 and unauthorized.parsed.code == "unauthorized"
