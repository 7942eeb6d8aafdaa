"""The Open Inference Protocol (KServe v2) for the skill models against a real server, through a real third-party
client (tritonclient's InferenceServerClient, binary and JSON tensors) and as raw JSON: health, metadata, readiness,
scores equal to the JSON API's, the request id echoed, versions, and errors in the protocol's shape."""

from __future__ import annotations

import re

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.utils.docs import run_python_example
from tests.utils.requests import student_items
from train.data.catalogue import SKILLS

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def client(server):
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


def feature_rows(items, names):
    return np.array([[item["features"].get(name, np.nan) for name in names] for item in items], dtype=np.float64)


def test_health_metadata_and_readiness(client):
    assert client.is_server_live() and client.is_server_ready()
    for skill in SKILLS:
        assert client.is_model_ready(f"skill-{skill}")
        metadata = client.get_model_metadata(f"skill-{skill}")
        n = len(metadata["parameters"]["feature_names"])
        assert metadata["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, n]}]
        assert [output["name"] for output in metadata["outputs"]] == ["score", "confidence"]
        assert "v1.0.0" in metadata["versions"]
        columns = metadata["parameters"]["features"]  # the model's schema, column by column
        assert [column["name"] for column in columns] == metadata["parameters"]["feature_names"]
        assert all("imputation_default" in column and "minimum" in column for column in columns)
    assert not client.is_model_ready("skill-nope")


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_scores_equal_the_json_apis_for_the_same_rows(client, server, binary, datatype):
    skill = "leadership"
    names = client.get_model_metadata(f"skill-{skill}")["parameters"]["feature_names"]
    items = student_items(25, seed=61, skills=(skill,))
    rows = feature_rows(items, names).astype(np.float32 if datatype == "FP32" else np.float64)
    rows[::5, 0] = np.nan  # some missing values: imputed as in the JSON API
    tensor = triton.InferInput("features", list(rows.shape), datatype)
    tensor.set_data_from_numpy(rows, binary_data=binary)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("score", "confidence")]
    result = client.infer(f"skill-{skill}", [tensor], outputs=outputs, request_id="r-7", model_version="v1.0.0")
    assert result.get_response()["id"] == "r-7"
    assert result.get_response()["model_version"] == "v1.0.0"
    for item, row in zip(items, rows, strict=True):
        item["features"] = {name: float(v) for name, v in zip(names, row, strict=True) if not np.isnan(v)}
    expected = httpx.post(server.url + "/api/v1/skills/infer/batch", json={"items": items}, timeout=30).json()
    expected_scores = [answer["score"] for answer in expected["results"]]
    assert np.allclose(result.as_numpy("score"), expected_scores, atol=1e-6)
    assert np.allclose(result.as_numpy("confidence"), np.abs(2 * np.array(expected_scores) - 1), atol=1e-6)


def test_errors_come_in_the_protocols_shape(client, server):
    url = server.url + "/v2/models/skill-communication/infer"
    rows = np.zeros((2, 3), dtype=np.float32)
    tensor = triton.InferInput("features", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    with pytest.raises(InferenceServerException, match=r"takes 7 features per row, got shape \[2, 3\]"):
        client.infer("skill-communication", [tensor])
    with pytest.raises(InferenceServerException, match="unknown model 'skill-nope'"):
        client.infer("skill-nope", [tensor])
    with pytest.raises(InferenceServerException, match=r"no version 'v9\.9\.9' loaded"):
        client.infer("skill-communication", [tensor], model_version="v9.9.9")
    out_of_range = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 7], "data": [1e9] + [None] * 6}]}
    answer = httpx.post(url, json=out_of_range)
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "row 0: features.words_per_response: 1e+09 is outside the valid range [0, 2000] (words)"
    }
    for body, fragment in (
        ({"inputs": []}, "exactly one tensor"),
        ({"inputs": [{"name": "x", "datatype": "INT8", "shape": [1, 7], "data": [0] * 7}]}, "FP32 or FP64"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 7], "data": [0] * 6}]}, "6 values for shape"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 7], "data": ["a"] * 7}]}, "must be numbers"),
        (
            {
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 7], "data": [1] * 7}],
                "outputs": [{"name": "p"}],
            },
            "unknown output 'p'",
        ),
    ):
        answer = httpx.post(url, json=body)
        assert answer.status_code == 400 and fragment in answer.json()["error"], (body, answer.text)
    assert httpx.post(url, content=b"{not json").status_code == 400
    infinite = np.zeros((1, 7), dtype=np.float32)
    infinite[0, 1] = np.inf  # JSON cannot carry it; the binary extension can
    tensor = triton.InferInput("features", list(infinite.shape), "FP32")
    tensor.set_data_from_numpy(infinite, binary_data=True)
    with pytest.raises(InferenceServerException, match=r"row 0: features\.vocabulary_diversity: expected a finite"):
        client.infer("skill-communication", [tensor])


def test_the_doc_example_runs_with_tritonclient(server):
    lines = run_python_example("oip.md", server.url)
    assert lines[0] == "True True"
    match = re.fullmatch(r"req-42 \[(0\.\d+), (0\.\d+)\]", lines[1])
    assert match and float(match.group(1)) < float(match.group(2))
