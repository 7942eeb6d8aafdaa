"""`python -m train <family> --data FILE` trains on a team's CSV or Parquet table, and the models it writes import
into a model store; `python -m train.export` writes the skills table from the ratings a real server collected in a
real PostgreSQL, and a model trained on that file imports too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, text

from inference.families.skills.artifacts import read_metadata
from tests.conftest import STABLE
from tests.utils.postgres import throwaway_database
from tests.utils.requests import RATINGS_AUTH
from tests.utils.servers import PROJECT_ROOT, start_server
from train.__main__ import main as train_main
from train.data.catalogue import FEATURES, SKILLS
from train.data.pairs import generate_pairs
from train.data.queries import generate_queries
from train.data.students import generate_students
from train.datasets import read_table

VERSION = "v2.0.0"
RATED_SKILLS = ("communication", "creativity", "leadership")
SMALL_SKILLS = ["--n-estimators", "60"]
SMALL_INTENT = ["--forest-trees", "10", "--boosting-rounds", "10", "--neighbours", "5"]


def write_table(columns: dict[str, list], path: Path) -> Path:
    table = pa.table(columns)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        pa_csv.write_csv(table, path)
    return path


def import_into_scratch_store(family: str, root: Path, version: str, home: Path) -> list[str]:
    """`get_family(family).import_artifacts(root, version)` in a store of its own (the session's store serves the
    other tests, which must not see these versions)."""
    code = (
        "import json, sys; from pathlib import Path; from inference.families import get_family; "
        "print(json.dumps(get_family(sys.argv[1]).import_artifacts(Path(sys.argv[2]), sys.argv[3])))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, family, str(root), version],
        cwd=PROJECT_ROOT,
        env={**os.environ, "BENTOML_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.splitlines()[-1])


def rated_students(n: int, *, seed: int) -> dict[str, list]:
    """A long skills table: every student rated on RATED_SKILLS (creativity on 4 in 5 of them), the 20 demo
    features, leadership's rows without novel_idea_count, and a feature column no row has a value of."""
    sample = generate_students(n, seed=seed)
    columns: dict[str, list] = {"student_id": [], "skill": [], **{name: [] for name in FEATURES}}
    columns |= {"never_measured": [], "rating": []}
    for skill in RATED_SKILLS:
        skill_index = SKILLS.index(skill)
        for row, student in enumerate(sample.student_ids):
            if skill == "creativity" and row % 5 == 4:
                continue
            columns["student_id"].append(student)
            columns["skill"].append(skill)
            for column, name in enumerate(sample.feature_names):
                value = sample.features[row, column]
                unmeasured = np.isnan(value) or (skill == "leadership" and name == "novel_idea_count")
                columns[name].append(None if unmeasured else float(value))
            columns["never_measured"].append(None)
            columns["rating"].append(float(sample.ratings[row, skill_index]))
    return columns


@pytest.mark.slow
@pytest.mark.parametrize(("suffix", "threshold"), [(".csv", None), (".parquet", 4.0)])
def test_skills_trains_on_a_rated_table_and_its_models_import(tmp_path, suffix, threshold):
    columns = rated_students(1500, seed=3)
    data = write_table(columns, tmp_path / f"ratings{suffix}")
    options = ["--rating-threshold", str(threshold)] if threshold else []
    argv = ["skills", "--version", VERSION, "--out", str(tmp_path / "out"), "--data", str(data), *SMALL_SKILLS]
    assert train_main(argv + options) == 0

    out = tmp_path / "out" / "skills" / VERSION
    report = json.loads((out / "report.json").read_text())
    assert list(report["skills"]) == list(RATED_SKILLS)
    assert report["data"] == {"source": data.name, "label": f"rating >= {threshold or 3.5:g}"}
    assert "n_students" not in report["params"] and report["params"]["n_estimators"] == 60
    assert report["n_train"] + report["n_test"] == 1500 and report["rows"]["creativity"]["train"] < 1000
    ratings = np.array(columns["rating"])
    for skill, metrics in report["skills"].items():
        assert metrics["auc"] > 0.75 and metrics["rating_pearson_r"] > 0.5, skill
        rated = ratings[np.array(columns["skill"]) == skill]
        assert abs(metrics["positive_share"] - np.mean(rated >= (threshold or 3.5))) < 0.06, skill

    measured = list(FEATURES)  # never_measured is no feature of any skill
    assert read_metadata(out / "communication")["feature_names"] == measured
    leadership = read_metadata(out / "leadership")
    assert leadership["feature_names"] == [name for name in measured if name != "novel_idea_count"]
    assert "features" not in leadership or not leadership["features"]  # no units or ranges were given
    rows = np.array(columns["skill"]) == "leadership"
    for name, default in leadership["imputation_defaults"].items():
        values = np.array(columns[name], dtype=float)[rows]
        assert np.nanpercentile(values, 40) <= default <= np.nanpercentile(values, 60), name
    assert (out / "roc.png").is_file() and "| leadership |" in (out / "report.md").read_text()

    tags = import_into_scratch_store("skills", out, VERSION, tmp_path / "bentoml")
    assert tags == [f"skill-{skill}:{VERSION}" for skill in sorted(RATED_SKILLS)]


@pytest.mark.slow
def test_skills_takes_a_label_column_and_the_features_and_ranges_a_file_lists(tmp_path):
    sample = generate_students(1200, seed=5)
    skill_index = SKILLS.index("creativity")
    labels = (sample.ratings[:, skill_index] >= 3.5).astype(int)
    columns = {
        "student_id": sample.student_ids,
        "skill": ["creativity"] * 1200,
        "school": ["north", "south"] * 600,  # not a feature: the features file leaves it out
        **{name: [None if np.isnan(v) else float(v) for v in sample.column(name)] for name in FEATURES},
        "label": labels.tolist(),
    }
    data = write_table(columns, tmp_path / "labelled.parquet")
    novel = {"name": "novel_idea_count", "unit": "ideas", "minimum": 0, "maximum": 100, "description": "Ideas."}
    listed = {"creativity": [novel, "vocabulary_diversity", "revision_count", "question_ratio"]}
    features = tmp_path / "features.json"
    features.write_text(json.dumps(listed))

    argv = ["skills", "--version", VERSION, "--out", str(tmp_path), "--data", str(data), "--features", str(features)]
    assert train_main([*argv, *SMALL_SKILLS]) == 0
    out = tmp_path / "skills" / VERSION
    metadata = read_metadata(out / "creativity")
    assert metadata["feature_names"] == ["novel_idea_count", "vocabulary_diversity", "revision_count", "question_ratio"]
    assert metadata["features"] == {
        "novel_idea_count": {"unit": "ideas", "minimum": 0.0, "maximum": 100.0, "description": "Ideas."}
    }
    assert "rating_pearson_r" not in metadata["metrics"] and metadata["metrics"]["auc"] > 0.7
    assert json.loads((out / "report.json").read_text())["data"]["label"] == "the label column"
    assert import_into_scratch_store("skills", out, VERSION, tmp_path / "bentoml") == [f"skill-creativity:{VERSION}"]


def skills_table(**changes: list) -> dict[str, list]:
    columns = {
        "student_id": ["a", "b", "c", "d"],
        "skill": ["creativity"] * 4,
        "novel_idea_count": [1.0, 2.0, None, 4.0],
        "rating": [1.0, 4.0, 2.0, 5.0],
    }
    return {name: values for name, values in (columns | changes).items() if values is not None}


@pytest.mark.parametrize(
    ("family", "columns", "options", "message"),
    [
        ("skills", skills_table(school=["n", "s", "n", "s"]), [], "column 'school' holds string, not numbers"),
        ("skills", skills_table(rating=None), [], "needs a 'rating' column (1-5) or a 'label' column"),
        ("skills", skills_table(rating=[1.0, 2.0, 2.5, 3.0]), [], "every row of skill 'creativity' has label 0"),
        (
            "skills",
            skills_table(label=[0, 1, 2, 1]),
            [],
            "label must be 0 or 1: 1 row(s) are not; the first is row 3 (2)",
        ),
        ("skills", skills_table(skill=["Creativity"] * 4), [], "row 1: skill 'Creativity' is not a usable skill"),
        ("skills", skills_table(student_id=["a", "b", "a", "d"]), [], "rows 1 and 3 both hold student 'a'"),
        (
            "skills",
            skills_table(),
            ["--features", '{"creativity": [{"name": "novel_idea_count", "maximum": 3}]}'],
            "novel_idea_count are outside its range [-inf, 3]; the first is row 4 (4)",
        ),
        ("skills", skills_table(), ["--features", '{"leadership": ["novel_idea_count"]}'], "no features for skills"),
        ("intent", {"text": ["a b", "c d"], "intent": ["x", "x"]}, [], "a classifier needs two values or more"),
        (
            "intent",
            {"text": ["a b", "c d"], "intent": ["x", "y"], "verticals": ["travel", ""]},
            [],
            "a detector needs two verticals or more",
        ),
        ("intent", {"text": ["a b", ""], "intent": ["x", "y"]}, [], "row 2: text is empty"),
        ("textpair", {"text1": ["a", "b"], "text2": ["c", "d"], "label": ["p", "q"]}, [], "(--positive-label)"),
        (
            "textpair",
            {"text1": ["a", "b"], "text2": ["c", "d"], "label": ["p", "q"]},
            ["--positive-label", "same"],
            "--positive-label 'same' is not one of the labels ['p', 'q']",
        ),
        ("textpair", {"text1": ["a"], "label": ["1"]}, [], "missing column(s) ['text2']"),
    ],
)
def test_a_file_that_cannot_be_trained_on_is_refused_naming_the_column_and_row(
    tmp_path, capsys, family, columns, options, message
):
    data = write_table(columns, tmp_path / "data.csv")
    if "--features" in options:
        (tmp_path / "features.json").write_text(options[1])
        options = ["--features", str(tmp_path / "features.json")]
    argv = [family, "--version", VERSION, "--out", str(tmp_path / "out"), "--data", str(data), *options]
    assert train_main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / family / VERSION).exists()  # nothing half-written


def test_options_of_file_data_are_refused_without_data(tmp_path, capsys):
    argv = ["skills", "--version", VERSION, "--out", str(tmp_path), "--rating-threshold", "4"]
    assert train_main(argv) == 2
    assert "--rating-threshold apply to --data only" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize(("suffix", "with_verticals"), [(".csv", True), (".parquet", False)])
def test_intent_trains_on_a_query_table_with_or_without_verticals_and_imports(tmp_path, suffix, with_verticals):
    sample = generate_queries(2000, seed=9)
    columns = {"text": sample.texts, "intent": sample.intents}
    if with_verticals:
        columns["verticals"] = [";".join(sorted(verticals)) for verticals in sample.verticals]
    data = write_table(columns, tmp_path / f"queries{suffix}")
    argv = ["intent", "--version", VERSION, "--out", str(tmp_path), "--data", str(data), *SMALL_INTENT]
    assert train_main(argv) == 0

    out = tmp_path / "intent" / VERSION
    report = json.loads((out / "report.json").read_text())
    assert (
        report["models"]["intent-classic"]["accuracy"] > 0.8 and report["models"]["intent-ensemble"]["accuracy"] > 0.8
    )
    assert "n_queries" not in report["params"] and report["data"]["source"] == data.name
    classic = read_metadata(out / "intent-classic")
    assert classic["labels"] == sorted(set(sample.intents))
    expected = ["intent-classic", "intent-ensemble"]
    if with_verticals:
        verticals = read_metadata(out / "intent-verticals")
        assert verticals["labels"] == sorted(set().union(*sample.verticals))
        assert set(verticals["thresholds"]) == set(verticals["labels"]) and verticals["metrics"]["micro_f1"] > 0.7
        expected.append("intent-verticals")
    else:
        assert not (out / "intent-verticals").exists()
        assert "No vertical detectors" in (out / "report.md").read_text()
    tags = import_into_scratch_store("intent", out, VERSION, tmp_path / "bentoml")
    assert sorted(tags) == sorted(f"{name}:{VERSION}" for name in expected)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("suffix", "names", "options", "positive"),
    [
        (".csv", {1: "duplicate", 0: "distinct"}, ["--positive-label", "duplicate"], "duplicate"),
        (".parquet", {1: 1, 0: 0}, [], "1"),  # numbers: the label 1 means the same
    ],
)
def test_textpair_trains_on_a_pair_table_with_its_own_labels_and_imports(tmp_path, suffix, names, options, positive):
    sample = generate_pairs(2000, seed=4)
    columns = {
        "text1": [first for first, _ in sample.pairs],
        "text2": [second for _, second in sample.pairs],
        "label": [names[label] for label in sample.labels],
    }
    data = write_table(columns, tmp_path / f"pairs{suffix}")
    argv = ["textpair", "--version", VERSION, "--out", str(tmp_path), "--data", str(data), *options]
    assert train_main(argv) == 0

    out = tmp_path / "textpair" / VERSION
    metadata = read_metadata(out / "textpair")
    assert metadata["positive_label"] == positive and positive in metadata["labels"] and len(metadata["labels"]) == 2
    assert metadata["metrics"]["f1"] > 0.8 and metadata["metrics"]["auc"] > 0.9
    assert "n_pairs" not in metadata["params"]
    assert import_into_scratch_store("textpair", out, VERSION, tmp_path / "bentoml") == [f"textpair:{VERSION}"]


def post_ratings(url: str, ratings: list[dict]) -> None:
    for start in range(0, len(ratings), 1000):
        chunk = {"ratings": ratings[start : start + 1000]}
        answer = httpx.post(f"{url}/api/v1/monitoring/ratings", json=chunk, headers=RATINGS_AUTH)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"stored": len(ratings[start : start + 1000]), "rejected": []}


def run_export(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "train.export", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.server
@pytest.mark.slow
def test_the_export_of_ratings_posted_over_http_to_postgresql_trains_models_that_import(trained_versions, tmp_path):
    sample = generate_students(1000, seed=21, id_prefix="pupil")
    skills = ("communication", "creativity")
    with throwaway_database() as url:
        engine = create_engine(url)
        names = list(FEATURES)
        with engine.begin() as connection:
            # The features the team's pipeline writes (here by hand, so the test depends on no writer of them).
            definitions = ", ".join(f"{name} double precision" for name in names)
            connection.execute(
                text(
                    f"CREATE TABLE student_features (student_id varchar(128) PRIMARY KEY, {definitions}, "
                    "updated_at timestamptz NOT NULL)"
                )
            )
            placeholders = ", ".join(f":{name}" for name in names)
            connection.execute(
                text(
                    f"INSERT INTO student_features (student_id, {', '.join(names)}, updated_at) "
                    f"VALUES (:student_id, {placeholders}, now())"
                ),
                [
                    {
                        "student_id": student,
                        **{n: None if np.isnan(v) else float(v) for n, v in zip(names, row, strict=True)},
                    }
                    for student, row in zip(sample.student_ids, sample.features, strict=True)
                ],
            )
        engine.dispose()

        rated_at = datetime.now(UTC) - timedelta(days=2)
        first, second = sample.student_ids[:2]
        env = {"DATABASE_URL": url, "INFERENCE_SKILLS_VERSION": STABLE, "INFERENCE_FAMILIES": '["skills"]'}
        with start_server(tmp_path / "logs", env=env) as server:
            post_ratings(
                server.url,
                [
                    {
                        "student_id": student,
                        "skill": skill,
                        "rating": float(sample.ratings[row, SKILLS.index(skill)]),
                        "rated_at": rated_at.isoformat(),
                    }
                    for skill in skills
                    for row, student in enumerate(sample.student_ids)
                ],
            )
            post_ratings(
                server.url,
                [
                    # Received last but rated before: not the latest.
                    {"student_id": first, "skill": "communication", "rating": 1.0, "rated_at": "2020-01-01T00:00:00Z"},
                    # Rated at the same time as the first rating and received after it: the latest.
                    {"student_id": second, "skill": "creativity", "rating": 4.9, "rated_at": rated_at.isoformat()},
                    # A student without features: left out.
                    {"student_id": "nobody", "skill": "creativity", "rating": 3.0, "rated_at": rated_at.isoformat()},
                ],
            )

        parquet, csv = tmp_path / "ratings.parquet", tmp_path / "ratings.csv"
        exported = run_export(url, "--out", str(parquet))
        assert exported.returncode == 0, exported.stderr[-3000:]
        assert "wrote 2000 rows of 2 skills (communication 1000, creativity 1000)" in exported.stdout
        assert "left out 1 latest ratings of students without a student_features row" in exported.stdout
        assert "postgres@127.0.0.1" in exported.stdout
        exported = run_export(url, "--out", str(csv), "--format", "csv")
        assert exported.returncode == 0, exported.stderr[-3000:]

    table = read_table(parquet, text_columns=("student_id", "skill"))
    assert table.column_names == ["student_id", "skill", *names, "rating"]
    assert table.equals(read_table(csv, text_columns=("student_id", "skill")))
    rows = table.to_pylist()
    assert [(row["student_id"], row["skill"]) for row in rows] == sorted(
        (student, skill) for student in sample.student_ids for skill in skills
    )
    by_key = {(row["student_id"], row["skill"]): row for row in rows}
    assert by_key[first, "communication"]["rating"] == sample.ratings[0, SKILLS.index("communication")]
    assert by_key[second, "creativity"]["rating"] == 4.9
    row_index = 7
    exported_row = by_key[sample.student_ids[row_index], "creativity"]
    for name, value in zip(names, sample.features[row_index], strict=True):
        assert exported_row[name] == (None if np.isnan(value) else pytest.approx(value)), name

    argv = ["skills", "--version", "v3.0.0", "--out", str(tmp_path), "--data", str(parquet), *SMALL_SKILLS]
    assert train_main(argv) == 0
    out = tmp_path / "skills" / "v3.0.0"
    report = json.loads((out / "report.json").read_text())
    for skill in skills:
        assert report["skills"][skill]["auc"] > 0.7 and report["skills"][skill]["rating_pearson_r"] > 0.4, skill
    tags = import_into_scratch_store("skills", out, "v3.0.0", tmp_path / "bentoml")
    assert tags == [f"skill-{skill}:v3.0.0" for skill in skills]
