"""The open-source peer: MLServer with its XGBoost runtime, serving the same 7 stored boosters.

MLServer 1.7.1 pins an older FastAPI than BentoML, so it runs from a virtual environment of its own, created
on first use under `.bench/`. It serves bare boosters over the Open Inference Protocol, so its requests carry
rows that are already imputed and scaled (work the other targets do on the server).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import bentoml

from inference.families.skills.scoring import skill_model_name
from inference.settings import Settings
from train.data.catalogue import SKILLS

PROJECT_ROOT = Path(__file__).resolve().parents[2]
VENV = PROJECT_ROOT / ".bench" / "mlserver-venv"
# Its parallel inference workers die at start with uvloop newer than 0.21 ("There is no current event loop").
PACKAGES = ["mlserver==1.7.1", "mlserver-xgboost==1.7.1", "xgboost-cpu==3.2.0", "uvloop==0.21.0"]
PARALLEL_WORKERS = 2  # one per core, as this service's workers
# Adaptive batching as a careful user would set it: batches of up to 64 rows, waiting at most 2 ms for them.
MAX_BATCH_SIZE, MAX_BATCH_TIME_S = 64, 0.002
EXECUTABLE = VENV / "bin" / "mlserver"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_venv() -> None:
    """Create MLServer's virtual environment, or bring it to `PACKAGES` when they changed."""
    marker = VENV / "packages.txt"
    wanted = "\n".join(PACKAGES)
    if EXECUTABLE.exists() and marker.exists() and marker.read_text() == wanted:
        return
    print(f"installing {' '.join(PACKAGES)} into {VENV} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", *PACKAGES], check=True)
    marker.write_text(wanted)


def write_repository(directory: Path, port: int) -> None:
    """A model repository with the pinned skill boosters, serving HTTP on `port` with parallel inference workers
    and adaptive batching on."""
    settings = Settings()
    directory.mkdir(parents=True)
    for skill in settings.skills or SKILLS:
        version = settings.skill_versions.get(skill, settings.skills_version)
        stored = bentoml.models.get(f"{skill_model_name(skill)}:{version}")
        (directory / skill).mkdir()
        model_settings = {
            "name": skill_model_name(skill),
            "implementation": "mlserver_xgboost.XGBoostModel",
            "parameters": {"uri": str(Path(stored.path) / "model.json"), "version": version},
            "max_batch_size": MAX_BATCH_SIZE,
            "max_batch_time": MAX_BATCH_TIME_S,
        }
        (directory / skill / "model-settings.json").write_text(json.dumps(model_settings))
    server_settings = {
        "parallel_workers": PARALLEL_WORKERS,
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "host": "127.0.0.1",
    }
    (directory / "settings.json").write_text(json.dumps(server_settings))


def infer_body(rows: list[list[float]]) -> str:
    """An Open Inference Protocol request for scaled rows (FP32, shape [n, n_features])."""
    data = [value for row in rows for value in row]
    return json.dumps(
        {"inputs": [{"name": "predict", "shape": [len(rows), len(rows[0])], "datatype": "FP32", "data": data}]}
    )
