"""Python clients of the inference service: `InferenceClient` (threads) and `AsyncInferenceClient` (asyncio).

    from inference.client import InferenceClient, IntentFallback

    with InferenceClient("http://127.0.0.1:3000", intent_fallback=IntentFallback("informational")) as client:
        result = client.infer_skill("s-001", "creativity", {"novel_idea_count": 4})
        print(result.score, result.model_version)

Results are the service's own pydantic models (`inference.schemas`). See docs/clients.md.
"""

from inference.client.asyncio_client import AsyncInferenceClient
from inference.client.errors import (
    InferenceClientError,
    InvalidInput,
    RequestRejected,
    ServiceTimeout,
    ServiceUnavailable,
    UnexpectedAnswer,
)
from inference.client.policy import CLIENT_DEFAULT_VARIANT, IntentFallback, RetryPolicy
from inference.client.sync import DEFAULT_URL, InferenceClient

__all__ = [
    "CLIENT_DEFAULT_VARIANT",
    "DEFAULT_URL",
    "AsyncInferenceClient",
    "InferenceClient",
    "InferenceClientError",
    "IntentFallback",
    "InvalidInput",
    "RequestRejected",
    "RetryPolicy",
    "ServiceTimeout",
    "ServiceUnavailable",
    "UnexpectedAnswer",
]
