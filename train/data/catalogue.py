"""The single source of truth for skills and student features.

Training, request validation, the service and `docs/features.md` all read this module. A feature is either
*linguistic* (measured from what a student writes or says) or *behavioural* (measured from activity logs).
Each skill's model uses an ordered subset of the features; the order is the column order of its model.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FeatureKind(StrEnum):
    LINGUISTIC = "linguistic"
    BEHAVIOURAL = "behavioural"


@dataclass(frozen=True)
class Feature:
    name: str
    kind: FeatureKind
    unit: str
    minimum: float
    maximum: float
    description: str

    def contains(self, value: float) -> bool:
        return self.minimum <= value <= self.maximum


SKILLS: tuple[str, ...] = (
    "communication",
    "collaboration",
    "critical_thinking",
    "creativity",
    "problem_solving",
    "self_regulation",
    "leadership",
)

_L = FeatureKind.LINGUISTIC
_B = FeatureKind.BEHAVIOURAL

FEATURES: dict[str, Feature] = {
    feature.name: feature
    for feature in (
        Feature("words_per_response", _L, "words", 0, 2000, "Mean length of a written response."),
        Feature("vocabulary_diversity", _L, "ratio", 0, 1, "Type-token ratio of the student's writing."),
        Feature("avg_sentence_length", _L, "words", 0, 100, "Mean number of words per sentence."),
        Feature("question_ratio", _L, "ratio", 0, 1, "Share of sentences that ask a question."),
        Feature(
            "argument_markers_rate",
            _L,
            "per 100 words",
            0,
            50,
            "Reasoning connectives (because, therefore, however) per 100 words.",
        ),
        Feature(
            "collaborative_language_ratio",
            _L,
            "ratio",
            0,
            1,
            "Share of pronouns that are inclusive (we, us, our).",
        ),
        Feature("hedging_ratio", _L, "ratio", 0, 1, "Share of claims softened by hedges (maybe, perhaps)."),
        Feature("sentiment_positivity", _L, "score", -1, 1, "Mean sentiment of messages, -1 negative to 1 positive."),
        Feature("novel_idea_count", _L, "ideas per session", 0, 50, "Distinct new ideas proposed per session."),
        Feature("time_on_task_minutes", _B, "minutes per session", 0, 600, "Active minutes per learning session."),
        Feature("task_completion_rate", _B, "ratio", 0, 1, "Share of assigned tasks completed."),
        Feature(
            "peer_interactions_per_week",
            _B,
            "count per week",
            0,
            500,
            "Messages, comments and reviews exchanged with peers.",
        ),
        Feature("help_requests_per_week", _B, "count per week", 0, 100, "Times the student asked for help."),
        Feature("help_given_per_week", _B, "count per week", 0, 100, "Times the student helped a peer."),
        Feature("revision_count", _B, "revisions per assignment", 0, 100, "Saved revisions before submitting."),
        Feature("on_time_submission_rate", _B, "ratio", 0, 1, "Share of assignments submitted by the deadline."),
        Feature("leadership_roles_taken", _B, "count per term", 0, 50, "Group roles taken (lead, facilitator)."),
        Feature("forum_posts_per_week", _B, "count per week", 0, 200, "Discussion forum posts written."),
        Feature(
            "attempts_before_success",
            _B,
            "attempts",
            0,
            50,
            "Mean attempts before a problem is solved (persistence).",
        ),
        Feature(
            "self_assessment_accuracy",
            _B,
            "ratio",
            0,
            1,
            "Agreement between the student's self-assessment and the graded result.",
        ),
    )
}

SKILL_FEATURES: dict[str, tuple[str, ...]] = {
    "communication": (
        "words_per_response",
        "vocabulary_diversity",
        "avg_sentence_length",
        "sentiment_positivity",
        "forum_posts_per_week",
        "peer_interactions_per_week",
        "question_ratio",
    ),
    "collaboration": (
        "collaborative_language_ratio",
        "peer_interactions_per_week",
        "help_given_per_week",
        "help_requests_per_week",
        "forum_posts_per_week",
        "sentiment_positivity",
    ),
    "critical_thinking": (
        "argument_markers_rate",
        "question_ratio",
        "hedging_ratio",
        "vocabulary_diversity",
        "avg_sentence_length",
        "revision_count",
        "attempts_before_success",
    ),
    "creativity": (
        "novel_idea_count",
        "vocabulary_diversity",
        "question_ratio",
        "revision_count",
        "words_per_response",
        "hedging_ratio",
    ),
    "problem_solving": (
        "attempts_before_success",
        "task_completion_rate",
        "argument_markers_rate",
        "time_on_task_minutes",
        "help_requests_per_week",
        "revision_count",
        "novel_idea_count",
    ),
    "self_regulation": (
        "on_time_submission_rate",
        "task_completion_rate",
        "time_on_task_minutes",
        "self_assessment_accuracy",
        "help_requests_per_week",
        "revision_count",
    ),
    "leadership": (
        "leadership_roles_taken",
        "help_given_per_week",
        "collaborative_language_ratio",
        "peer_interactions_per_week",
        "sentiment_positivity",
        "forum_posts_per_week",
        "words_per_response",
    ),
}


def features_for(skill: str) -> tuple[str, ...]:
    """The ordered feature names of a skill's model; raises `KeyError` for an unknown skill."""
    return SKILL_FEATURES[skill]
