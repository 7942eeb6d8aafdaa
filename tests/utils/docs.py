"""Running the examples of the README and docs/*.md in tests, as a reader would paste them."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
from typing import Any

from tests.utils.servers import PROJECT_ROOT

# The server the docs' curl examples call: `make serve`'s address.
DOCUMENTED_URL = "http://127.0.0.1:3000"
# Keys whose values differ per training run, answer or call: only their presence is checked.
VOLATILE_KEYS = {"trained_at", "training_data_hash", "timestamp", "cached"}
# A one-line curl command in a bash block, then its answer in a json block.
CURL_EXAMPLE = re.compile(r"```bash\n(curl [^\n]+)\n```\n\n```json\n(.*?)\n```", flags=re.DOTALL)


def doc_block(name: str, language: str) -> str:
    """The one fenced `language` block of docs/`name` (fails when there is none or more than one)."""
    (code,) = re.findall(rf"```{language}\n(.*?)```", (PROJECT_ROOT / "docs" / name).read_text(), flags=re.DOTALL)
    return code


def run_python_example(name: str, service_url: str) -> list[str]:
    """Execute the Python block of docs/`name` with SERVICE_URL set; the lines it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(doc_block(name, "python"), f"docs/{name}", "exec"), {"SERVICE_URL": service_url})
    return printed.getvalue().splitlines()


def curl_examples(page: str) -> list[tuple[str, str]]:
    """The (curl command, documented answer) pairs of a page, in order."""
    return CURL_EXAMPLE.findall(page)


def curl_route(command: str) -> str:
    """The path a documented curl command calls (`/api/classify`)."""
    found = re.search(re.escape(DOCUMENTED_URL) + r"(/[^\s?'\"]*)", command)
    assert found, f"no call to {DOCUMENTED_URL}: {command}"
    return found.group(1)


def run_curl(command: str, service_url: str) -> Any:
    """Run a documented curl command against `service_url` instead of the documented server; its JSON answer."""
    assert DOCUMENTED_URL in command
    output = subprocess.run(
        ["bash", "-c", command.replace(DOCUMENTED_URL, service_url)], capture_output=True, text=True, timeout=30
    )
    assert output.returncode == 0, output.stderr
    return json.loads(output.stdout)


def assert_same_shape(documented: Any, actual: Any, *, path: str = "$", abbreviated: bool = False) -> None:
    """Same keys and strings; numbers only need to be numbers (scores depend on the trained models). An
    `abbreviated` answer shows some of the keys: those must be there, others may be too."""
    if isinstance(documented, dict):
        keys_ok = set(documented) <= set(actual) if abbreviated else set(actual) == set(documented)
        assert isinstance(actual, dict) and keys_ok, f"{path}: keys {set(actual)} != {set(documented)}"
        for key, value in documented.items():
            if key not in VOLATILE_KEYS:
                assert_same_shape(value, actual[key], path=f"{path}.{key}", abbreviated=abbreviated)
    elif isinstance(documented, list):
        assert isinstance(actual, list) and len(actual) >= len(documented), path
        for index, (expected, got) in enumerate(zip(documented, actual, strict=False)):
            assert_same_shape(expected, got, path=f"{path}[{index}]", abbreviated=abbreviated)
    elif isinstance(documented, int | float) and not isinstance(documented, bool):
        assert isinstance(actual, int | float), path
    else:
        assert actual == documented, f"{path}: {actual!r} != {documented!r}"
