"""Admin changes shared by the worker processes of one server: a small JSON file, written atomically.

The worker that takes an admin call applies it at once and writes the file; the other workers notice the new
file (they look at most once a second) and apply the same change. `{"routes": {family: {"stable": version,
"weights": {version: weight}}}}`; a family absent from it runs on its configured route.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any

STATE_FILE = "admin-state.json"


class SharedState:
    def __init__(self, directory: Path) -> None:
        self.path = directory / STATE_FILE
        directory.mkdir(parents=True, exist_ok=True)

    def stamp(self) -> tuple[int, int] | None:
        """Changes whenever the file is replaced (modification time and inode); None when there is none."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_ino)

    def read(self) -> dict[str, Any]:
        try:
            state = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return state if isinstance(state, dict) else {}

    def routes(self) -> dict[str, dict[str, Any]]:
        routes = self.read().get("routes", {})
        return routes if isinstance(routes, dict) else {}

    def set_route(self, family: str, route: dict[str, Any]) -> None:
        # Two workers may take admin calls at once: the lock keeps one's read-modify-write from undoing the other's.
        with (self.path.parent / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self.read()
            state.setdefault("routes", {})[family] = route
            handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".state-")
            with os.fdopen(handle, "w") as file:
                json.dump(state, file)
            os.replace(temporary, self.path)  # atomic: a reader sees the old file or the new one, never half
