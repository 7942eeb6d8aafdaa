"""Bearer tokens are checked when the settings are read, so a server with an unsafe one fails at start with a
message naming the setting (never the token): a token shorter than 24 characters, an example placeholder of
deploy/secrets.env.example or k8s/base/secret.example.yaml, or one value under two names or roles."""

from __future__ import annotations

import json

import pytest
import yaml
from pydantic import ValidationError

from inference.http.tokens import MIN_TOKEN_CHARS, unsafe_token
from inference.settings import Settings
from tests.utils.servers import PROJECT_ROOT, start_server

# Distinct from the session's INFERENCE_RATINGS_TOKEN (tests/conftest.py), which every Settings() reads too.
ADMIN = "admin-token-for-the-token-tests-01"
ALICE = "alice-token-for-the-token-tests-02"
WRITER = "writer-token-for-the-token-tests-03"


def refusal(**settings: object) -> str:
    with pytest.raises(ValidationError) as refused:
        Settings(**settings)
    return str(refused.value)


def example_tokens() -> dict[str, str]:
    """Every token value the two shipped examples hold, by where it is."""
    found = {}
    env_example = (PROJECT_ROOT / "deploy" / "secrets.env.example").read_text().splitlines()
    variables = dict(line.split("=", 1) for line in env_example if line and not line.startswith("#"))
    found["INFERENCE_ADMIN_TOKEN"] = variables["INFERENCE_ADMIN_TOKEN"]
    found["INFERENCE_RATINGS_TOKEN"] = variables["INFERENCE_RATINGS_TOKEN"]
    for name, token in json.loads(variables["INFERENCE_ADMIN_TOKENS"]).items():
        found[f"INFERENCE_ADMIN_TOKENS[{name}]"] = token
    secret = yaml.safe_load((PROJECT_ROOT / "k8s" / "base" / "secret.example.yaml").read_text())["stringData"]
    found["admin-token"], found["ratings-token"] = secret["admin-token"], secret["ratings-token"]
    for name, token in json.loads(secret["admin-tokens"]).items():
        found[f"admin-tokens[{name}]"] = token
    return found


def test_long_distinct_tokens_are_accepted_and_an_empty_one_is_off():
    settings = Settings(admin_token=ADMIN, admin_tokens={"alice": ALICE}, ratings_tokens={"school-a": WRITER})
    assert settings.admin_token.get_secret_value() == ADMIN
    assert Settings(admin_token="").admin_token.get_secret_value() == ""  # off, as unset


def test_a_short_token_is_refused_naming_the_setting_and_never_the_token():
    short = "x7-short-admin-token"
    assert len(short) < MIN_TOKEN_CHARS
    message = refusal(admin_token=short)
    assert "INFERENCE_ADMIN_TOKEN is shorter than 24 characters" in message
    assert short not in message
    message = refusal(ratings_tokens={"school-a": "x7-short-writer"})
    assert "INFERENCE_RATINGS_TOKENS['school-a'] is shorter than 24 characters" in message
    assert "x7-short-writer" not in message


@pytest.mark.parametrize(("where", "token"), sorted(example_tokens().items()))
def test_every_placeholder_of_the_examples_is_refused(where, token):
    assert unsafe_token(token) is not None, where
    message = refusal(admin_token=token)
    assert "INFERENCE_ADMIN_TOKEN is an example placeholder" in message and token not in message


@pytest.mark.parametrize(
    "token", ["change-me-please-0123456789", "CHANGE-ME-0123456789abcdef", "and-me-0123456789abcdef0"]
)
def test_the_placeholder_family_is_refused_whatever_follows(token):
    assert "is an example placeholder" in refusal(ratings_token=token)


def test_one_token_in_two_roles_or_under_two_names_is_refused():
    message = refusal(admin_token=ADMIN, ratings_tokens={"school-a": ADMIN})
    assert "INFERENCE_ADMIN_TOKEN and INFERENCE_RATINGS_TOKENS['school-a'] hold the same token" in message
    message = refusal(admin_tokens={"alice": ALICE, "bob": ALICE})
    assert "INFERENCE_ADMIN_TOKENS['alice'] and INFERENCE_ADMIN_TOKENS['bob'] hold the same token" in message
    message = refusal(admin_token=ADMIN, admin_tokens={"alice": ADMIN})
    assert "INFERENCE_ADMIN_TOKEN and INFERENCE_ADMIN_TOKENS['alice']" in message
    assert ADMIN not in message and ALICE not in message


@pytest.mark.server
def test_a_server_with_an_unsafe_token_fails_at_start_saying_which_setting(session_dir):
    short = "x7-short-admin-token"
    logs = session_dir / "logs-unsafe-token"
    with (
        pytest.raises(RuntimeError, match="server exited") as failed,
        start_server(logs, env={"INFERENCE_ADMIN_TOKEN": short}, timeout=60),
    ):
        pass
    assert "INFERENCE_ADMIN_TOKEN is shorter than 24 characters" in str(failed.value)  # the log's end
    assert all(short not in log.read_text() for log in logs.glob("*.log"))
