"""What `python -m train <family>` needs of a family's trainer: its parameters (each an option), how to train,
how to read a team's table (--data), its own options and how to sum up a report. Each family's trainer is named
by its registration (`FamilySpec.trainer`), so a team's family trains through the same command.

`train` is called with the command's progress (`inference.progress.Progress`, in models): it sets the total once
it knows how many models it trains (`progress.set_total`) and advances by one as each is written, so a long
training shows how far it is (a bar on a terminal, a line per model in a log)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def _no_options(parser: argparse.ArgumentParser) -> None:
    return None


@dataclass(frozen=True)
class Trainer:
    params_type: type
    train: Callable[..., dict[str, Any]]  # (version, params, out_dir, data or None, *, progress) -> report
    read_data: Callable[[argparse.Namespace], Any]  # the parsed options -> the family's table from --data
    description: str
    data_columns: str
    summary: Callable[[dict[str, Any]], list[str]]  # a report's lines for the console
    add_options: Callable[[argparse.ArgumentParser], None] = _no_options  # the family's own options
    data_only: tuple[str, ...] = ()  # those of its options that mean something with --data only
