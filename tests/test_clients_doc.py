"""docs/clients.md's examples run as written: the Python block against a real server, the C++ program compiled
against the client library and run against the same server."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.utils.docs import doc_block, run_python_example
from tests.utils.servers import PROJECT_ROOT

pytestmark = pytest.mark.server


def test_the_python_example_runs_and_prints_what_its_comments_say(server):
    lines = run_python_example("clients.md", server.url)
    assert re.fullmatch(r"creativity: \d\.\d{3} \(v1\.0\.0\)", lines[0])
    assert lines[1] == "1 1 unknown_skill"
    assert lines[2] == "local ensemble False"
    assert lines[4].startswith("400 invalid_feature_value features.novel_idea_count")
    assert lines[5] == "informational client_default True"
    assert lines[6].startswith("skills unavailable:")


def test_the_cpp_example_compiles_against_the_library_and_runs(cpp_build, server, tmp_path):
    source = tmp_path / "example.cpp"
    source.write_text(doc_block("clients.md", "cpp"))
    program = tmp_path / "example"
    subprocess.run(
        [
            "g++",
            "-std=c++17",
            "-O2",
            f"-I{PROJECT_ROOT / 'include'}",
            str(source),
            str(cpp_build / "libclassification_client.a"),
            "-lcurl",
            "-pthread",
            "-o",
            str(program),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    run = subprocess.run([str(program), server.url], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert re.fullmatch(r"local 0\.\d+ classic", lines[0])
    assert lines[1] == "navigational"
    assert lines[2].startswith("error invalid_text: ")
    assert lines[3] == "400 invalid_text"
