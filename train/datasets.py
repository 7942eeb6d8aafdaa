"""Training data from files: `python -m train <family> --data FILE`, a CSV or Parquet table per family.

| family | columns |
|---|---|
| skills | `student_id`, `skill`, one numeric column per feature (empty where not measured), and `rating` or `label` |
| intent | `text`, `intent`, and optionally `verticals` (names separated by `;`, empty for none) |
| textpair | `text1`, `text2`, `label` (any two values) |

Skills data is long: one row per student and skill rated. Its label is `label` (0 or 1) when the table has that
column, else `rating >= threshold` (3.5 by default, the demo's rule, on the service's 1-5 scale); with both, the
ratings are kept to report the correlation of the scores with them. A skill's model uses the feature columns with
at least one value among that skill's rows, in the table's order, or the features a JSON file lists per skill
(`read_feature_lists`). Other columns are refused, so that a typo is not trained on silently.

Every fault is a `DataError` naming the file, the column and, where there is one, the row (counted from 1, after
the header).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from inference.families.skills.schema import SCHEMA_KEYS, FeatureSpec
from inference.families.textpair.scorer import SAME_MEANING_LABELS
from inference.schemas import SKILL_NAME
from train.data.students import HIGH_SKILL_RATING

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
STUDENT_ID, SKILL, RATING, LABEL = "student_id", "skill", "rating", "label"
TEXT, INTENT, VERTICALS = "text", "intent", "verticals"
TEXT1, TEXT2 = "text1", "text2"
VERTICALS_SEPARATOR = ";"
DEFAULT_RATING_THRESHOLD = HIGH_SKILL_RATING
# A text-pair label that reads as "the texts mean the same" (the service's rule too: families/textpair/scorer.py).


class DataError(ValueError):
    """A training file that cannot be trained on; the message names the file, the column and the row."""


@dataclass(frozen=True)
class SkillExamples:
    """One skill's rows: `values` in the order of `features` (NaN where not measured), a 0/1 label per row, and
    the teacher rating behind each label where the data has ratings. The features' `default` is set at training
    (the training median)."""

    features: tuple[FeatureSpec, ...]
    student_ids: list[str]
    values: np.ndarray
    labels: np.ndarray
    ratings: np.ndarray | None


@dataclass(frozen=True)
class SkillTable:
    skills: dict[str, SkillExamples]
    source: str  # for the report: where the rows came from
    label_rule: str
    data_hash: str


@dataclass(frozen=True)
class QueryTable:
    texts: list[str]
    intents: list[str]
    verticals: list[frozenset[str]] | None  # None: the data names no verticals, and no detector is trained
    vertical_names: tuple[str, ...]
    source: str
    data_hash: str


@dataclass(frozen=True)
class PairTable:
    pairs: list[tuple[str, str]]
    labels: list[str]
    positive_label: str
    source: str
    data_hash: str


def read_table(path: Path, *, text_columns: Sequence[str] = ()) -> pa.Table:
    """A CSV (`.csv`, `.csv.gz`) or Parquet (`.parquet`, `.pq`) file as an Arrow table; `text_columns` are read
    as text whatever they look like (student ids such as 007 stay as written)."""
    name = path.name.lower()
    try:
        if name.endswith(CSV_SUFFIXES):
            types = dict.fromkeys(text_columns, pa.string())
            return pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(column_types=types))
        if name.endswith(PARQUET_SUFFIXES):
            return pq.read_table(path)
    except FileNotFoundError as err:
        raise DataError(f"{path}: no such file") from err
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{path}: not a readable table ({err})") from err
    raise DataError(
        f"{path}: expected a CSV ({', '.join(CSV_SUFFIXES)}) or Parquet ({', '.join(PARQUET_SUFFIXES)}) file"
    )


def file_hash(path: Path, *extra: str) -> str:
    """What a report calls the training data hash: the file's bytes, and what else decided the labels."""
    digest = hashlib.sha256(path.read_bytes())
    for item in extra:
        digest.update(b"\0" + item.encode())
    return digest.hexdigest()


def read_skill_table(
    path: Path, *, rating_threshold: float = DEFAULT_RATING_THRESHOLD, features_file: Path | None = None
) -> SkillTable:
    """The skills training table of `path` (format: this module's docstring), one `SkillExamples` per skill."""
    table = read_table(path, text_columns=(STUDENT_ID, SKILL))
    _require(table, (STUDENT_ID, SKILL), path)
    if LABEL not in table.column_names and RATING not in table.column_names:
        raise DataError(f"{path}: needs a {RATING!r} column (1-5) or a {LABEL!r} column (0 or 1)")
    student_ids = text_values(table, STUDENT_ID, path)
    skills = text_values(table, SKILL, path)
    ratings = number_values(table, RATING, path) if RATING in table.column_names else None
    if LABEL in table.column_names:
        labels = number_values(table, LABEL, path)
        _refuse_rows(path, LABEL, ~np.isin(labels, (0, 1)), labels, "must be 0 or 1")
        label_rule = f"the {LABEL} column"
    else:
        assert ratings is not None
        _refuse_rows(path, RATING, ~np.isfinite(ratings), ratings, "must be a number")
        labels = (ratings >= rating_threshold).astype(np.float64)
        label_rule = f"{RATING} >= {rating_threshold:g}"
    for row, skill in enumerate(skills, 1):
        if not SKILL_NAME.match(skill):
            raise DataError(
                f"{path}: row {row}: skill {skill!r} is not a usable skill name (lowercase letters, digits and _, "
                "starting with a letter, at most 64 characters)"
            )
    seen: dict[tuple[str, str], int] = {}
    for row, key in enumerate(zip(student_ids, skills, strict=True), 1):
        if key in seen:
            raise DataError(f"{path}: rows {seen[key]} and {row} both hold student {key[0]!r}, skill {key[1]!r}")
        seen[key] = row

    columns = [name for name in table.column_names if name not in (STUDENT_ID, SKILL, RATING, LABEL)]
    listed = read_feature_lists(features_file) if features_file else None
    if listed is not None:
        _check_listed_skills(listed, set(skills), path, features_file)
        missing = sorted({spec.name for specs in listed.values() for spec in specs} - set(columns))
        if missing:
            raise DataError(f"{features_file}: lists features that {path} has no column for: {missing}")
        columns = sorted({spec.name for specs in listed.values() for spec in specs}, key=columns.index)
    values = {name: number_values(table, name, path) for name in columns}

    examples = {}
    skill_array = np.array(skills, dtype=object)
    for skill in dict.fromkeys(skills):
        rows = np.flatnonzero(skill_array == skill)
        if listed is not None:
            specs = listed[skill]
        else:
            specs = tuple(
                FeatureSpec(name=name, default=math.nan) for name in columns if np.isfinite(values[name][rows]).any()
            )
        if not specs:
            raise DataError(f"{path}: no row of skill {skill!r} has a feature value")
        matrix = np.column_stack([values[spec.name][rows] for spec in specs])
        for column, spec in enumerate(specs):
            _check_feature(path, skill, spec, matrix[:, column], rows)
        skill_labels = labels[rows].astype(np.int32)
        if np.unique(skill_labels).size < 2:
            raise DataError(
                f"{path}: every row of skill {skill!r} has label {skill_labels[0]} ({label_rule}); a model needs both"
            )
        examples[skill] = SkillExamples(
            features=specs,
            student_ids=[student_ids[row] for row in rows],
            values=matrix,
            labels=skill_labels,
            ratings=None if ratings is None else ratings[rows],
        )
    extra = [label_rule] + ([features_file.read_text()] if features_file else [])
    return SkillTable(examples, source=path.name, label_rule=label_rule, data_hash=file_hash(path, *extra))


def read_feature_lists(path: Path) -> dict[str, tuple[FeatureSpec, ...]]:
    """`--features FILE`: per skill, the features its model uses, in column order; each a name, or an object with
    the name and, optionally, the feature's unit, minimum, maximum and description (the service refuses values
    outside the range and shows the rest in its docs):

        {"communication": ["words_per_response", {"name": "forum_posts_per_week", "unit": "posts", "minimum": 0}]}
    """
    try:
        listed = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable JSON file ({err})") from err
    if not isinstance(listed, dict) or not listed:
        raise DataError(f"{path}: expected an object of skill -> list of features")
    lists = {}
    for skill, entries in listed.items():
        if not isinstance(entries, list) or not entries:
            raise DataError(f"{path}: {skill}: expected a non-empty list of features")
        specs = [_feature_entry(entry, f"{path}: {skill}") for entry in entries]
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise DataError(f"{path}: {skill}: lists a feature more than once")
        lists[skill] = tuple(specs)
    return lists


def read_query_table(path: Path) -> QueryTable:
    """The intent training table of `path`: text, intent, and optionally verticals (`a;b`, empty for none)."""
    table = read_table(path, text_columns=(TEXT, INTENT, VERTICALS))
    _require(table, (TEXT, INTENT), path)
    texts, intents = text_values(table, TEXT, path), text_values(table, INTENT, path)
    _require_two_labels(intents, INTENT, path)
    verticals: list[frozenset[str]] | None = None
    names: tuple[str, ...] = ()
    if VERTICALS in table.column_names:
        cells = text_values(table, VERTICALS, path, allow_empty=True)
        verticals = [
            frozenset(name.strip() for name in cell.split(VERTICALS_SEPARATOR) if name.strip()) for cell in cells
        ]
        names = tuple(sorted(set().union(*verticals)))
        if len(names) < 2:
            raise DataError(
                f"{path}: column {VERTICALS!r} names {list(names)}; a detector needs two verticals or more "
                f"(separated by {VERTICALS_SEPARATOR!r}), or leave the column out"
            )
    return QueryTable(texts, intents, verticals, names, source=path.name, data_hash=file_hash(path))


def read_pair_table(path: Path, *, positive_label: str | None = None) -> PairTable:
    """The text-pair training table of `path`: text1, text2 and a label of two values, one of which
    (`positive_label`, by default the one reading 1/true/yes/same/paraphrase) means the same meaning."""
    table = read_table(path, text_columns=(TEXT1, TEXT2, LABEL))
    _require(table, (TEXT1, TEXT2, LABEL), path)
    firsts, seconds = text_values(table, TEXT1, path), text_values(table, TEXT2, path)
    labels = text_values(table, LABEL, path)
    values = sorted(set(labels))
    if len(values) != 2:
        raise DataError(f"{path}: column {LABEL!r} must hold exactly two values, found {values[:10]}")
    if positive_label is None:
        candidates = [value for value in values if value.lower() in SAME_MEANING_LABELS]
        if len(candidates) != 1:
            raise DataError(f"{path}: say which of the labels {values} means the same meaning (--positive-label)")
        positive_label = candidates[0]
    if positive_label not in values:
        raise DataError(f"{path}: --positive-label {positive_label!r} is not one of the labels {values}")
    return PairTable(
        list(zip(firsts, seconds, strict=True)),
        labels,
        positive_label,
        source=path.name,
        data_hash=file_hash(path, positive_label),
    )


def text_values(table: pa.Table, name: str, path: Path, *, allow_empty: bool = False) -> list[str]:
    column = table.column(name)
    try:
        values = column.cast(pa.string()).to_pylist()
    except pa.ArrowException as err:
        raise DataError(f"{path}: column {name!r} cannot be read as text ({err})") from err
    for row, value in enumerate(values, 1):
        if value is None and allow_empty:
            values[row - 1] = ""
        elif value is None or (not allow_empty and not value.strip()):
            raise DataError(f"{path}: row {row}: {name} is empty")
    return values


def number_values(table: pa.Table, name: str, path: Path) -> np.ndarray:
    """A numeric (or true/false) column as float64, NaN where empty; any other type is refused naming the column."""
    column = table.column(name)
    kind = column.type
    if not (
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind)
    ):
        raise DataError(
            f"{path}: column {name!r} holds {kind}, not numbers; a skills table holds student_id, skill, rating or "
            "label, and numeric feature columns (list the features with --features to leave other columns out)"
        )
    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _require(table: pa.Table, names: Sequence[str], path: Path) -> None:
    missing = [name for name in names if name not in table.column_names]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; it has {table.column_names}")
    if table.num_rows == 0:
        raise DataError(f"{path}: no rows")


def _require_two_labels(labels: Sequence[str], name: str, path: Path) -> None:
    if len(set(labels)) < 2:
        raise DataError(f"{path}: column {name!r} holds {sorted(set(labels))}; a classifier needs two values or more")


def _refuse_rows(path: Path, name: str, bad: np.ndarray, values: np.ndarray, expected: str) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: {name} {expected}: {int(bad.sum())} row(s) are not; the first is row {row + 1} ({values[row]:g})"
        )


def _check_listed_skills(
    listed: dict[str, tuple[FeatureSpec, ...]], skills: set[str], path: Path, features_file: Path | None
) -> None:
    unlisted, absent = sorted(skills - set(listed)), sorted(set(listed) - skills)
    if unlisted:
        raise DataError(f"{features_file}: lists no features for skills {unlisted} of {path}")
    if absent:
        raise DataError(f"{features_file}: lists skills {absent} that {path} has no rows of")


def _check_feature(path: Path, skill: str, spec: FeatureSpec, values: np.ndarray, rows: np.ndarray) -> None:
    infinite = np.isinf(values)
    if infinite.any():
        first = int(np.flatnonzero(infinite)[0])
        raise DataError(f"{path}: skill {skill!r}: {spec.name} is infinite in row {int(rows[first]) + 1}")
    measured = np.isfinite(values)
    if not measured.any():
        raise DataError(f"{path}: no row of skill {skill!r} has a value of {spec.name}")
    outside = measured & ((values < spec.minimum) | (values > spec.maximum))
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise DataError(
            f"{path}: skill {skill!r}: {int(outside.sum())} value(s) of {spec.name} are outside its range "
            f"{spec.range_text()}; the first is row {int(rows[first]) + 1} ({values[first]:g})"
        )


def _feature_entry(entry: object, where: str) -> FeatureSpec:
    if isinstance(entry, str) and entry:
        return FeatureSpec(name=entry, default=math.nan)
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
        raise DataError(f"{where}: a feature is a name, or an object with a name, got {entry!r}")
    unknown = sorted(set(entry) - {"name", *SCHEMA_KEYS})
    if unknown:
        raise DataError(f"{where}: {entry['name']}: unknown keys {unknown}; expected name, {', '.join(SCHEMA_KEYS)}")
    bounds = {}
    for key, default in (("minimum", -math.inf), ("maximum", math.inf)):
        value = entry.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DataError(f"{where}: {entry['name']}.{key}: expected a number, got {value!r}")
        bounds[key] = float(value)
    if bounds["minimum"] > bounds["maximum"]:
        raise DataError(
            f"{where}: {entry['name']}: minimum {bounds['minimum']:g} is above maximum {bounds['maximum']:g}"
        )
    return FeatureSpec(
        name=entry["name"],
        default=math.nan,
        unit=str(entry.get("unit", "")),
        description=str(entry.get("description", "")),
        **bounds,
    )
