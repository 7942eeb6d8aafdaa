"""The README's curl examples run against a real server and answer in the documented shape."""

import json
import re
import subprocess

import pytest

from tests.utils.servers import PROJECT_ROOT

pytestmark = pytest.mark.server

README = (PROJECT_ROOT / "README.md").read_text()
EXAMPLES = re.findall(r"```bash\n(curl [^\n]+)\n```\n\n```json\n(.*?)\n```", README, flags=re.DOTALL)
DOCUMENTED_URL = "http://127.0.0.1:3000"
VOLATILE_KEYS = {"trained_at", "training_data_hash", "timestamp", "cached"}  # differ per training run, answer, or call


def test_the_readme_has_curl_examples_with_documented_answers():
    assert len(EXAMPLES) >= 7


def test_the_set_up_section_gives_exactly_the_serve_and_test_commands():
    setup = README.split("## Set up", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^(make \w+)", setup, flags=re.MULTILINE)
    assert commands == ["make serve", "make test"]


@pytest.mark.parametrize(("command", "documented"), EXAMPLES, ids=[f"example-{i}" for i in range(len(EXAMPLES))])
def test_a_readme_example_answers_as_documented(server, command, documented):
    assert DOCUMENTED_URL in command
    output = subprocess.run(
        ["bash", "-c", command.replace(DOCUMENTED_URL, server.url)], capture_output=True, text=True, timeout=30
    )
    assert output.returncode == 0, output.stderr
    assert_same_shape(json.loads(documented), json.loads(output.stdout), path="$")


def assert_same_shape(documented, actual, *, path):
    """Same keys and strings; numbers only need to be numbers (scores depend on the trained demo models)."""
    if isinstance(documented, dict):
        assert isinstance(actual, dict) and set(actual) == set(documented), (
            f"{path}: keys {set(actual)} != {set(documented)}"
        )
        for key, value in documented.items():
            if key not in VOLATILE_KEYS:
                assert_same_shape(value, actual[key], path=f"{path}.{key}")
    elif isinstance(documented, list):
        assert isinstance(actual, list) and len(actual) >= len(documented), path
        for index, (expected, got) in enumerate(zip(documented, actual, strict=False)):
            assert_same_shape(expected, got, path=f"{path}[{index}]")
    elif isinstance(documented, int | float) and not isinstance(documented, bool):
        assert isinstance(actual, int | float), path
    else:
        assert actual == documented, f"{path}: {actual!r} != {documented!r}"
