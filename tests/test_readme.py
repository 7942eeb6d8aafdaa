"""The README's curl examples, one per family, and the rest in docs/examples.md run against a real server and
answer in the documented shape."""

import json
import re

import pytest

from tests.utils.docs import assert_same_shape, curl_examples, curl_route, run_curl
from tests.utils.servers import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()
README_EXAMPLES = curl_examples(README)
MORE_EXAMPLES = curl_examples((PROJECT_ROOT / "docs" / "examples.md").read_text())
EXAMPLES = [*README_EXAMPLES, *MORE_EXAMPLES]
IDS = [f"README-{i}" for i in range(len(README_EXAMPLES))] + [f"examples.md-{i}" for i in range(len(MORE_EXAMPLES))]


def test_the_readme_calls_each_family_once_and_docs_examples_shows_more():
    assert [curl_route(command) for command, _ in README_EXAMPLES] == [
        "/api/v1/skills/infer",
        "/api/classify",
        "/predict",
    ]
    assert len(MORE_EXAMPLES) >= 4
    assert "](docs/examples.md)" in README.split("## Try it", 1)[1].split("\n## ", 1)[0]


def test_the_set_up_section_gives_exactly_the_serve_and_test_commands():
    setup = README.split("## Set up", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^(make \w+)", setup, flags=re.MULTILINE)
    assert commands == ["make serve", "make test"]


@pytest.mark.server
@pytest.mark.parametrize(("command", "documented"), EXAMPLES, ids=IDS)
def test_an_example_answers_as_documented(server, command, documented):
    assert_same_shape(json.loads(documented), run_curl(command, server.url))
