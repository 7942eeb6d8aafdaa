"""Bearer tokens of the routes that change something: the admin API and the ratings writers, each with tokens of
its own (a ratings writer cannot change routes, an admin token cannot write ratings). A token has a name, which
the audit records.

A token is refused at start (`unsafe_token`) when it is short enough to guess or is one of the example values
shipped in deploy/secrets.env.example and k8s/base/secret.example.yaml: anyone can read those."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from pydantic import SecretStr

# The rule of a safe token is the settings' (they refuse an unsafe one at start); named here too for the routes.
from inference.settings import MIN_TOKEN_CHARS, PLACEHOLDER_PREFIXES, Settings, unsafe_token

__all__ = ["MIN_TOKEN_CHARS", "PLACEHOLDER_PREFIXES", "unsafe_token"]

ADMIN_TOKEN_NAME = "admin"  # how the audit names INFERENCE_ADMIN_TOKEN
WRITER_TOKEN_NAME = "ratings"  # and INFERENCE_RATINGS_TOKEN


def named_tokens(single_name: str, single: SecretStr | None, named: Mapping[str, SecretStr]) -> dict[str, str]:
    """The one token setting under `single_name` beside the named ones; empty values are left out."""
    tokens = {single_name: single.get_secret_value()} if single is not None else {}
    tokens.update({name: secret.get_secret_value() for name, secret in named.items()})
    return {name: value for name, value in tokens.items() if value}


def admin_tokens(settings: Settings) -> dict[str, str]:
    """The admin API's tokens by name."""
    return named_tokens(ADMIN_TOKEN_NAME, settings.admin_token, settings.admin_tokens)


def writer_tokens(settings: Settings) -> dict[str, str]:
    """The ratings writers' tokens by name (a role apart from the admin's)."""
    return named_tokens(WRITER_TOKEN_NAME, settings.ratings_token, settings.ratings_tokens)


def token_name(tokens: Mapping[str, str], authorization: str | None) -> str | None:
    """The name of the token the request carries, or None. Every token is compared, in constant time each."""
    if not authorization or not authorization.startswith("Bearer "):
        return None
    given = authorization.removeprefix("Bearer ").encode()
    found = None
    for name, token in tokens.items():
        if hmac.compare_digest(given, token.encode()):
            found = name
    return found
