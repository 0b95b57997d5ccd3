"""Dead-letter headers (SPEC.md "Kafka": the original headers plus the error's).

A message dead-lettered again (a replay that failed again) keeps its
original headers but not the previous error headers: the new ones replace
them instead of piling up.
"""
import traceback
from collections.abc import Sequence
from dataclasses import dataclass

ERROR_HEADER_PREFIX = "dlt-"
ORIGINAL_TOPIC = "dlt-original-topic"
ORIGINAL_PARTITION = "dlt-original-partition"
ORIGINAL_OFFSET = "dlt-original-offset"
ORIGINAL_TIMESTAMP = "dlt-original-timestamp"
CONSUMER_GROUP = "dlt-original-consumer-group"
EXCEPTION_CLASS = "dlt-exception-fqcn"
EXCEPTION_MESSAGE = "dlt-exception-message"
EXCEPTION_STACKTRACE = "dlt-exception-stacktrace"
ATTEMPTS = "dlt-attempts"

# Kafka headers have no size limit of their own but count against the message's.
MAX_STACKTRACE_BYTES = 8000


@dataclass(frozen=True)
class DeadLetterContext:
    topic: str
    partition: int
    offset: int
    timestamp: int | None
    consumer_group: str
    attempts: int


def exception_class_name(error: BaseException) -> str:
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}"


def dead_letter_headers(
    original: Sequence[tuple[str, bytes]], context: DeadLetterContext, error: BaseException
) -> list[tuple[str, bytes]]:
    kept = [(name, value) for name, value in original if not name.startswith(ERROR_HEADER_PREFIX)]
    stack = "".join(traceback.format_exception(error)).encode()[-MAX_STACKTRACE_BYTES:]
    added = [
        (ORIGINAL_TOPIC, context.topic.encode()),
        (ORIGINAL_PARTITION, str(context.partition).encode()),
        (ORIGINAL_OFFSET, str(context.offset).encode()),
        (ORIGINAL_TIMESTAMP, str(context.timestamp if context.timestamp is not None else "").encode()),
        (CONSUMER_GROUP, context.consumer_group.encode()),
        (EXCEPTION_CLASS, exception_class_name(error).encode()),
        (EXCEPTION_MESSAGE, str(error).encode()[:2000]),
        (EXCEPTION_STACKTRACE, stack),
        (ATTEMPTS, str(context.attempts).encode()),
    ]
    return kept + added
