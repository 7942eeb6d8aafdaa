"""docs/quickstart.md, a newcomer's first page: at most 100 lines and the README's first link; its model is
brought with the README's three commands (tests/test_serve_store.py runs them); its calls answer with what they
show (abbreviated); its deploy steps name targets, scripts and kustomizations that exist."""

import json
import re

import pytest

from tests.test_serve_store import COMMANDS
from tests.utils.docs import assert_same_shape, curl_examples, curl_route, run_curl
from tests.utils.servers import PROJECT_ROOT

QUICKSTART = (PROJECT_ROOT / "docs" / "quickstart.md").read_text()
README = (PROJECT_ROOT / "README.md").read_text()
CALLS = curl_examples(QUICKSTART)


def test_the_quickstart_fits_in_100_lines():
    assert len(QUICKSTART.splitlines()) <= 100


def test_the_readme_sends_a_newcomer_to_the_quickstart_before_anything_else():
    before_set_up = README.split("\n## ", 1)[0]
    assert "](docs/quickstart.md)" in before_set_up
    docs_row = next(line for line in README.splitlines() if line.startswith("| `docs/` |"))
    assert re.findall(r"\]\((docs/[^)]+)\)", docs_row)[0] == "docs/quickstart.md"


def test_the_quickstart_serves_with_make_serve_and_calls_each_family_once():
    assert re.findall(r"^make \w+", QUICKSTART, flags=re.MULTILINE)[0] == "make serve"
    assert [curl_route(command) for command, _ in CALLS] == ["/api/v1/skills/infer", "/api/classify", "/predict"]


def test_the_quickstart_brings_a_model_with_the_readmes_three_commands():
    assert COMMANDS, "README: the three commands of 'Your models, your data' are gone"
    assert f"```bash\n{COMMANDS.group(1)}```" in QUICKSTART


def test_the_quickstart_deploys_with_what_exists():
    phony = re.search(r"^\.PHONY: (.*)$", (PROJECT_ROOT / "Makefile").read_text(), flags=re.MULTILINE)
    assert phony
    assert set(re.findall(r"^make (\w+)", QUICKSTART, flags=re.MULTILINE)) <= set(phony.group(1).split())
    script = PROJECT_ROOT / "deploy" / "containerize.sh"
    assert "deploy/containerize.sh 0.2.0" in QUICKSTART and script.stat().st_mode & 0o111
    kustomizations = re.findall(r"kubectl apply -k (k8s/[\w/]+)", QUICKSTART) + re.findall(
        r"`(k8s/[\w/]+)`", QUICKSTART
    )
    assert "k8s/rollouts" in kustomizations  # the recommended rollout: Gateway API + Argo Rollouts
    for directory in kustomizations:
        assert (PROJECT_ROOT / directory / "kustomization.yaml").exists(), directory


@pytest.mark.server
@pytest.mark.parametrize(("command", "shown"), CALLS, ids=[curl_route(command) for command, _ in CALLS])
def test_a_quickstart_call_answers_with_what_it_shows(server, command, shown):
    assert_same_shape(json.loads(shown), run_curl(command, server.url), abbreviated=True)
