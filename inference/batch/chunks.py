"""A chunk of students through the served skill models: pure compute over numpy arrays, no database.

Each student is scored for each skill exactly as `POST /api/v1/skills/infer` scores a request carrying the
student's present features: the same preparation (`prepare_matrix`, the vectorised twin of `prepare_row`) and the
same `score_rows`. A row the service would reject with a 4xx becomes an `ItemFailure` with the service's code and
message, and the rest of the chunk is scored.

Nothing here knows which skills or features there are: the skills are the keys of the models mapping, the features
the names in the models' schemas.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.errors import InvalidRequest
from inference.families.skills.features import prepare_matrix, prepare_row
from inference.families.skills.scoring import SkillModel, score_rows

# Constants of the features hash (SplitMix64's finaliser). Changing any of them, or the hash's definition, makes
# every stored assessment look stale to an incremental run: a test pins known values.
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_MISSING_BITS = np.uint64(0x7FF8DEAD0000BEEF)  # a NaN payload no arithmetic produces: "not measured"


def served_feature_names(models: Mapping[str, SkillModel]) -> tuple[str, ...]:
    """Every feature the models use, each once, in the order first seen (skill by skill, each in its model's
    order): the columns of `student_features` a run reads."""
    return tuple(dict.fromkeys(name for model in models.values() for name in model.feature_names))


@dataclass(frozen=True)
class FeatureChunk:
    """Students as read from `student_features`, in student_id order, one column per name of `feature_names`."""

    feature_names: tuple[str, ...]
    student_ids: list[str]
    updated_at: list[Any]  # as the database returned them; written back unchanged as `features_updated_at`
    values: np.ndarray  # (n, len(feature_names)) float64; NaN where missing, inf where not a number
    missing: np.ndarray  # (n, len(feature_names)) bool: NULL in the database
    raw: np.ndarray  # (n, len(feature_names)) the values as the database returned them

    def __len__(self) -> int:
        return len(self.student_ids)

    @classmethod
    def from_rows(
        cls, rows: Sequence[Sequence[Any]], feature_names: Sequence[str], *, numbers_guaranteed: bool = False
    ) -> FeatureChunk:
        """Rows of (student_id, updated_at, *values of `feature_names` in that order), None for NULL.

        `numbers_guaranteed`: the driver returns only floats and None for the feature columns (PostgreSQL's
        float8), so the per-value type check is skipped. SQLite keeps whatever was written, text included, and
        text must fail like it does in a request, even text `float()` would accept ("1_00").
        """
        names = tuple(feature_names)
        table = np.array(rows, dtype=object).reshape(len(rows), 2 + len(names))
        raw = table[:, 2:]
        missing = np.equal(raw, None)
        if numbers_guaranteed or _all_numbers(raw):
            values = np.where(missing, np.nan, raw).astype(np.float64)
        else:
            values = np.array([[_number_or_inf(value) for value in row] for row in raw], dtype=np.float64)
        return cls(names, table[:, 0].tolist(), table[:, 1].tolist(), values, missing, raw)

    def columns_of(self, model: SkillModel) -> list[int]:
        """The chunk's columns of the model's features, in the model's order."""
        index = {name: column for column, name in enumerate(self.feature_names)}
        absent = [name for name in model.feature_names if name not in index]
        if absent:
            raise ValueError(f"{model.store_name}:{model.version} uses features the chunk was not read with: {absent}")
        return [index[name] for name in model.feature_names]

    def present_features(self, row: int) -> dict[str, Any]:
        """One student's features as a request would carry them: the measured ones, as stored."""
        return {
            name: self.raw[row, column]
            for column, name in enumerate(self.feature_names)
            if not self.missing[row, column]
        }


_NUMBER_TYPES = frozenset({float, int, type(None)})


def _all_numbers(raw: np.ndarray) -> bool:
    return _NUMBER_TYPES.issuperset(map(type, raw.flat))


def _number_or_inf(value: Any) -> float:
    if value is None:
        return np.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return np.inf
    return np.inf  # not a number: invalid, and `prepare_row` says what it is


@dataclass(frozen=True)
class ItemFailure:
    student_id: str
    skill: str
    code: str
    message: str
    features_updated_at: Any


@dataclass(frozen=True)
class ScoredChunk:
    """Scores of a chunk, one column per skill (in `skills` order); `scored` is False where an item failed."""

    chunk: FeatureChunk
    skills: tuple[str, ...]
    versions: tuple[str, ...]  # model version per skill
    scores: np.ndarray  # (n, len(skills)) float64
    confidences: np.ndarray  # (n, len(skills)) float64
    hashes: np.ndarray  # (n, len(skills)) int64
    scored: np.ndarray  # (n, len(skills)) bool
    failures: list[ItemFailure]

    @property
    def last_student_id(self) -> str | None:
        return self.chunk.student_ids[-1] if len(self.chunk) else None

    @property
    def assessment_count(self) -> int:
        return int(self.scored.sum())

    def students(self, rows: Sequence[int]) -> ScoredChunk:
        """The chunk's students at positions `rows` (in that order), with their scores and failures."""
        index = np.asarray(rows, dtype=np.intp)
        chunk = self.chunk
        part = FeatureChunk(
            chunk.feature_names,
            [chunk.student_ids[row] for row in rows],
            [chunk.updated_at[row] for row in rows],
            chunk.values[index],
            chunk.missing[index],
            chunk.raw[index],
        )
        kept = set(part.student_ids)
        failures = [failure for failure in self.failures if failure.student_id in kept]
        return ScoredChunk(
            part,
            self.skills,
            self.versions,
            self.scores[index],
            self.confidences[index],
            self.hashes[index],
            self.scored[index],
            failures,
        )

    def assessment_columns(self) -> dict[str, np.ndarray]:
        """The assessments as columns, student-major (each student's skills together, students in id order),
        the order that keeps the primary key's index writes local."""
        rows, skills = np.nonzero(self.scored)  # C order: row-major, so student-major
        return {
            "row": rows,
            "skill": skills,
            "score": self.scores[rows, skills],
            "confidence": self.confidences[rows, skills],
            "features_hash": self.hashes[rows, skills],
        }


def features_hash(values: np.ndarray, missing: np.ndarray, feature_names: Sequence[str]) -> np.ndarray:
    """A 64-bit hash (int64) per row of the values of `feature_names`, missing ones included as "missing".

    Vectorised: hashing 7 million rows one by one with hashlib costs seconds, this costs milliseconds. Equal
    values hash equally (0.0 and -0.0 too); the names and their order are part of the hash.
    """
    bits = np.where(missing, _MISSING_BITS, (values + 0.0).view(np.uint64))  # + 0.0 turns -0.0 into 0.0
    names_digest = hashlib.blake2b(",".join(feature_names).encode(), digest_size=8).digest()
    hashed = np.full(len(values), np.uint64(int.from_bytes(names_digest, "little")), dtype=np.uint64)
    for column in range(bits.shape[1]):
        hashed = _mix(hashed ^ _mix(bits[:, column] + np.uint64(column + 1)))
    return hashed.view(np.int64)


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


def score_chunk(chunk: FeatureChunk, models: Mapping[str, SkillModel]) -> ScoredChunk:
    """Score every student of `chunk` for every skill of `models` (in its order); rows the service would reject
    become failures. The chunk must hold every feature the models use (`served_feature_names`)."""
    skills = tuple(models)
    n = len(chunk)
    shape = (n, len(skills))
    scores, confidences = np.zeros(shape), np.zeros(shape)
    hashes, scored = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=bool)
    failures: list[ItemFailure] = []
    for column, skill in enumerate(skills):
        model = models[skill]
        columns = chunk.columns_of(model)
        values, missing = chunk.values[:, columns], chunk.missing[:, columns]
        hashes[:, column] = features_hash(values, missing, model.feature_names)
        prepared = prepare_matrix(values, missing, model)
        valid = prepared.valid
        for row in np.flatnonzero(~valid):
            try:
                # The request path names the bad feature; it also has the last word on the row.
                prepared.values[row] = prepare_row(chunk.present_features(row), model).values
            except InvalidRequest as err:
                failures.append(
                    ItemFailure(chunk.student_ids[row], skill, err.code, err.message, chunk.updated_at[row])
                )
            else:
                valid[row] = True
        if valid.any():
            # XGBoost for every chunk: faster than ONNX Runtime beyond ~100 rows, and one path for every chunk size.
            result = score_rows(model, prepared.values[valid], compiled=False)
            scores[valid, column] = result.score
            confidences[valid, column] = result.confidence
        scored[:, column] = valid
    versions = tuple(model.version for model in models.values())
    return ScoredChunk(chunk, skills, versions, scores, confidences, hashes, scored, failures)


def model_versions(models: Mapping[str, SkillModel]) -> dict[str, str]:
    return {skill: model.version for skill, model in models.items()}
