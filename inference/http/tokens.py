"""Bearer tokens of the routes that change something: the admin API and the ratings writers, each with tokens of
its own (a ratings writer cannot change routes, an admin token cannot write ratings). A token has a name, which
the audit records."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from pydantic import SecretStr


def named_tokens(single_name: str, single: SecretStr | None, named: Mapping[str, SecretStr]) -> dict[str, str]:
    """The one token setting under `single_name` beside the named ones; empty values are left out."""
    tokens = {single_name: single.get_secret_value()} if single is not None else {}
    tokens.update({name: secret.get_secret_value() for name, secret in named.items()})
    return {name: value for name, value in tokens.items() if value}


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
