"""Progress of the long commands: off a terminal (CI, a Job's log) plain lines, one per model imported and per
interval of a batch run (training's, a line per model: tests/test_training.py); on a terminal a bar that ends on
the full count. Small inputs: a few hundred students in chunks of fifty."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import numpy as np

from inference.batch.scorer import BatchScorer, RunOptions
from inference.progress import Progress, ProgressBar, advance_current, current, on_terminal, progress_for
from inference.store.importing import check_conversion
from tests.utils.batch import demo_database, load_students
from train.data.students import generate_students


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_a_batch_run_of_several_chunks_off_a_terminal_logs_progress_lines(stable_models, tmp_path, caplog):
    database = demo_database(f"sqlite:///{tmp_path / 'batch.db'}")
    load_students(database, generate_students(200, seed=5).feature_dicts())
    options = RunOptions(chunk_size=50, progress_interval_s=1e-9, retry_backoff_s=0.0)
    with caplog.at_level(logging.INFO, logger="inference"):
        BatchScorer(database, stable_models, options).run()
    progress = [record.getMessage() for record in caplog.records if "students/s, ETA" in record.getMessage()]
    assert [line.split(" students")[0] for line in progress] == ["50/200", "100/200", "150/200", "200/200"]
    assert "assessments written" in progress[-1]


def test_an_import_reports_each_model_converted_and_saved_to_the_progress_shown():
    lines: list[str] = []
    clock = iter([0.0, 1.0, 1.0])
    shown = Progress(total=None, unit="models saved", interval_s=0, clock=lambda: next(clock), emit=lines.append)
    with current(shown):
        check_conversion(np.array([0.25, 0.75]), np.array([0.25, 0.75]), where=Path("team/algebra/model.pkl"))
    advance_current(1, extra="not shown: no command shows progress now")
    assert lines == ["0 models saved, converted and checked team/algebra/model.pkl, 1s elapsed"]


def test_plain_lines_come_at_most_once_per_interval_and_learn_a_late_total():
    now = [0.0]
    lines: list[str] = []
    progress = Progress(total=None, unit="models", interval_s=10, clock=lambda: now[0], emit=lines.append)
    progress.set_total(4)
    now[0] = 4.0
    progress.advance(1)
    now[0] = 10.0
    progress.advance(1, extra="algebra: AUC 0.91")
    assert lines == ["2/4 models (50.0%), algebra: AUC 0.91, 0.2 models/s, ETA 10s"]


def test_on_a_terminal_the_command_draws_a_bar_that_ends_on_the_full_count():
    terminal = Terminal()
    assert on_terminal(terminal) and not on_terminal(io.StringIO())
    with ProgressBar(total=None, unit="models", description="training skills v0.0.1", stream=terminal) as bar:
        bar.set_total(3)
        for skill in ("algebra", "geometry", "writing"):
            bar.advance(1, extra=f"{skill}: AUC 0.9")
    drawn = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", terminal.getvalue())  # colours and cursor moves
    assert "training skills v0.0.1" in drawn and "3/3 models" in drawn and "writing: AUC 0.9" in drawn


def test_off_a_terminal_the_command_gets_plain_lines():
    lines: list[str] = []
    progress = progress_for(description="training", total=2, unit="models", interval_s=0, bar=False, emit=lines.append)
    with progress:
        progress.advance(1)
    assert not isinstance(progress, ProgressBar) and lines[0].startswith("1/2 models (50.0%)")
