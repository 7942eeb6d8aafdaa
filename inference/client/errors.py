"""What a client call raises: the service refused the request (4xx, never retried), or could not answer."""

from __future__ import annotations


class InferenceClientError(Exception):
    """Base of every error the clients raise."""


class RequestRejected(InferenceClientError):
    """The service answered 4xx: the request is wrong and sending it again cannot help. `field_message` names the
    field, as the service does (`features.novel_idea_count: expected a number, got str 'lots'`)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class InvalidInput(InferenceClientError, ValueError):
    """The request cannot be sent as it is (a field the API's model refuses, a value JSON cannot carry such as
    NaN); nothing was sent."""


class ServiceUnavailable(InferenceClientError):
    """No answer: the service could not be reached, or answered 5xx, after the retries."""


class ServiceTimeout(ServiceUnavailable):
    """No answer within the call's timeout (making the connection included); a timeout is not retried."""


class UnexpectedAnswer(ServiceUnavailable):
    """An answer that is not the API's (a proxy's error page, a truncated body): as good as none."""
