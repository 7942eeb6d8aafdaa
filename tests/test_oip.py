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
from tests.utils.prometheus import metric_total
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
        "error": "row 0: features.words_per_response: 1e+09 is outside the valid range [0, 2000] (words)",
        "code": "invalid_request",
    }
    for body, fragment in (
        ({"inputs": []}, "expected a list of tensors"),
        ({"inputs": [{"name": "x", "datatype": "INT8", "shape": [1, 7], "data": [0] * 7}]}, "unsupported datatype"),
        ({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}, "FP32 or FP64 tensor"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 7], "data": [0] * 6}]}, "6 values for 7"),
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


def test_server_metadata_names_the_server_its_version_and_extensions(client, server):
    metadata = client.get_server_metadata()  # what KServe's and Triton's clients check before anything else
    assert metadata["name"] == "inference"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", metadata["version"])
    assert metadata["extensions"] == ["binary_tensor_data"]
    assert httpx.get(server.url + "/v2").json() == metadata


def strings(result, output):
    """A BYTES output as strings: tritonclient gives bytes for binary data, str for JSON data."""
    return [value.decode() if isinstance(value, bytes) else value for value in result.as_numpy(output)]


def text_tensor(name, texts, binary):
    tensor = triton.InferInput(name, [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array(texts, dtype=np.object_), binary_data=binary)
    return tensor


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("variant", ["classic", "ensemble"])
def test_intent_over_the_protocol_answers_as_the_json_api_does(client, server, variant, binary):
    texts = ["dentist near me", "cheap flights to lisbon", "how do I reset my password", "pizza delivery open now"]
    name = f"intent-{variant}"
    metadata = client.get_model_metadata(name)
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert [output["name"] for output in metadata["outputs"]] == ["intent", "confidence", "verticals", "variant"]
    assert client.is_model_ready(name, "v1.0.0")
    outputs = [
        triton.InferRequestedOutput(output, binary_data=binary)
        for output in ("intent", "confidence", "variant", "verticals")
    ]
    result = client.infer(name, [text_tensor("text", texts, binary)], outputs=outputs, request_id="q-1")
    assert result.get_response()["id"] == "q-1" and result.get_response()["model_version"] == "v1.0.0"
    expected = httpx.post(
        server.url + "/api/classify/batch", json={"texts": texts}, headers={"X-Model-Preference": variant}, timeout=30
    ).json()["results"]
    assert strings(result, "intent") == [answer["intent"] for answer in expected]
    assert np.allclose(result.as_numpy("confidence"), [answer["confidence"] for answer in expected], atol=1e-9)
    assert strings(result, "variant") == [answer["variant"] for answer in expected]
    assert strings(result, "verticals") == [
        ",".join(vertical["vertical"] for vertical in answer["verticals"]) for answer in expected
    ]


@pytest.mark.parametrize("binary", [True, False])
def test_text_pairs_over_the_protocol_answer_as_the_json_api_does(client, server, binary):
    pairs = [("a cat sat on the mat", "a cat was sitting on the mat"), ("the stock market fell", "I like tea")]
    inputs = [text_tensor(name, [pair[i] for pair in pairs], binary) for i, name in enumerate(("text1", "text2"))]
    result = client.infer(
        "textpair",
        inputs,
        outputs=[
            triton.InferRequestedOutput(output, binary_data=binary) for output in ("prediction", "label", "confidence")
        ],
    )
    for index, (text1, text2) in enumerate(pairs):
        expected = httpx.post(server.url + "/predict", json={"text1": text1, "text2": text2}, timeout=30).json()
        assert int(result.as_numpy("prediction")[index]) == expected["prediction"]
        assert strings(result, "label")[index] == expected["label"]
        assert abs(float(result.as_numpy("confidence")[index]) - expected["confidence"]) < 1e-9


def test_text_models_refuse_bad_tensors_naming_the_input_and_row(server):
    url = server.url + "/v2/models/textpair/infer"
    for body, fragment in (
        ({"inputs": [{"name": "text1", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}, "named text1, text2"),
        (
            {
                "inputs": [
                    {"name": "text1", "datatype": "BYTES", "shape": [1], "data": ["a"]},
                    {"name": "text2", "datatype": "FP32", "shape": [1], "data": [1.0]},
                ]
            },
            "text2: expected BYTES",
        ),
        (
            {
                "inputs": [
                    {"name": "text1", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]},
                    {"name": "text2", "datatype": "BYTES", "shape": [1], "data": ["a"]},
                ]
            },
            "the same number of texts",
        ),
        (
            {
                "inputs": [
                    {"name": "text1", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]},
                    {"name": "text2", "datatype": "BYTES", "shape": [2], "data": ["a", "   "]},
                ]
            },
            "row 1: text2",
        ),
        ({"inputs": [{"name": "text1", "datatype": "BYTES", "shape": [1], "data": [3]}]}, "list of strings"),
    ):
        answer = httpx.post(url, json=body)
        assert answer.status_code == 400 and fragment in answer.json()["error"], (body, answer.text)
    missing = httpx.post(server.url + "/v2/models/intent-nope/infer", json={"inputs": []})
    assert missing.status_code == 404 and "intent-classic" in missing.json()["error"]
    # A truncated binary element: the length prefix announces more bytes than were sent.
    header = b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}}]}'
    answer = httpx.post(
        server.url + "/v2/models/intent-classic/infer",
        content=header + b"\x09\x00\x00\x00ab",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert answer.status_code == 400 and "9 bytes announced" in answer.json()["error"], answer.text


def test_skill_rows_take_the_json_apis_path_through_the_result_cache(client, server):
    skill = "communication"
    names = client.get_model_metadata(f"skill-{skill}")["parameters"]["feature_names"]
    rows = feature_rows(student_items(3, seed=67, skills=(skill,)), names)
    body = {
        "inputs": [{"name": "features", "datatype": "FP64", "shape": list(rows.shape), "data": rows.ravel().tolist()}]
    }
    url = server.url + f"/v2/models/skill-{skill}/infer"
    hits = metric_total(server.url, "inference_cache_requests_total", family="skills", outcome="hit")
    first = httpx.post(url, json=body).json()["outputs"]
    for _ in range(9):  # ten requests on at most two workers (a cache each): one worker answers five or more
        assert httpx.post(url, json=body).json()["outputs"] == first
    assert metric_total(server.url, "inference_cache_requests_total", family="skills", outcome="hit") >= hits + 12
    # Observed once per request, by the protocol's handler around the serving path (not once more inside it).
    timed = {"family": "skills", "endpoint": "oip"}
    before = metric_total(server.url, "inference_model_duration_seconds_count", **timed)
    httpx.post(url, json=body).raise_for_status()
    assert metric_total(server.url, "inference_model_duration_seconds_count", **timed) == before + 1
