"""The batch scorer's progress: `inference.progress`, where every long command's progress lives (this name stays for
the modules that import it from here)."""

from __future__ import annotations

from inference.progress import Progress, format_duration

__all__ = ["Progress", "format_duration"]
