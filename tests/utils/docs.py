"""Running the examples of docs/*.md in tests, as a reader would paste them."""

from __future__ import annotations

import contextlib
import io
import re

from tests.utils.servers import PROJECT_ROOT


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
