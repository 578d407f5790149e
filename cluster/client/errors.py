"""The exceptions our client raises, split by who is at fault.

A command-line tool must tell its user in one line whether the broker refused something (a Kafka error
code, which the broker chose and named), or whether the broker could not be reached at all (an address,
a timeout).  The two need different exit codes (``kraftpy`` exits 1 for the first, 2 for the second), so
they share no base class: ``KafkaResponseError`` is a ``cluster.core.errors.KafkaError`` carrying the
ErrorCode and the broker's message; ``BrokerConnectionError`` carries the address that failed.
"""

from __future__ import annotations

from cluster.core.errors import ErrorCode, KafkaError

__all__ = [
    "BrokerConnectionError",
    "KafkaResponseError",
    "RETRIABLE_ERRORS",
    "RequestTimeoutError",
    "error_from_code",
]

# Errors after which the same request may succeed once metadata is refreshed (Kafka marks these
# RetriableException).  The produce path retries only the subset that guarantees nothing was appended.
RETRIABLE_ERRORS = frozenset(
    {
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.REQUEST_TIMED_OUT,
        ErrorCode.NETWORK_EXCEPTION,
        ErrorCode.NOT_ENOUGH_REPLICAS,
        ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        ErrorCode.NOT_CONTROLLER,
        ErrorCode.FENCED_LEADER_EPOCH,
        ErrorCode.UNKNOWN_LEADER_EPOCH,
        ErrorCode.KAFKA_STORAGE_ERROR,
        ErrorCode.OFFSET_NOT_AVAILABLE,
        ErrorCode.REPLICA_NOT_AVAILABLE,
    }
)


class KafkaResponseError(KafkaError):
    """A broker answered with a non-zero error code.

    ``str()`` starts with the ErrorCode name (``TOPIC_ALREADY_EXISTS: Topic 'x' already exists.``);
    ``api`` and ``resource`` say which request and which topic/partition it concerned.
    """

    def __init__(self, error_code: ErrorCode, message: str = "", *, api: str = "", resource: str = "") -> None:
        super().__init__(error_code, message)
        self.api = api
        self.resource = resource

    @property
    def retriable(self) -> bool:
        return self.error_code in RETRIABLE_ERRORS


def error_from_code(code: int, message: str | None, *, api: str = "", resource: str = "") -> KafkaResponseError:
    """Builds the exception for a response's error code; an unknown code keeps its number in the text."""
    try:
        error_code = ErrorCode(code)
    except ValueError:
        error_code = ErrorCode.UNKNOWN_SERVER_ERROR
        message = f"unknown error code {code}" + (f": {message}" if message else "")
    if not message:
        # Brokers often leave error_message null; say what the code was about instead.
        message = f"{api} failed for {resource}" if api and resource else (api or resource)
    return KafkaResponseError(error_code, message, api=api, resource=resource)


class BrokerConnectionError(ConnectionError):
    """A broker could not be reached, or the connection broke; ``address`` is ``host:port``."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"{address}: {reason}")
        self.address = address
        self.reason = reason


class RequestTimeoutError(BrokerConnectionError):
    """A request got no response within its timeout (the broker may be stuck or partitioned)."""
