import hashlib
from collections.abc import Sequence

from django.contrib.postgres.fields import ArrayField
from django.db import models


def content_digest(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str | bytes, bytes]]) -> str:
    """SHA-256 (hex) of a message's key, value and headers, each part length-prefixed so none can pass for another.

    What tells two messages read at the same topic, partition and offset
    apart: a broker that came back empty hands out its offsets again. Stored
    with each dead letter (and computed by migration 0004 for the older ones),
    so its definition must never change.
    """
    digest = hashlib.sha256()

    def part(data: bytes | None) -> None:
        if data is None:
            digest.update(b"\x00")
        else:
            digest.update(b"\x01" + len(data).to_bytes(8, "big") + bytes(data))

    part(key)
    part(value)
    digest.update(len(headers).to_bytes(8, "big"))
    for name, header_value in headers:
        part(name.encode() if isinstance(name, str) else bytes(name))
        part(header_value)
    return digest.hexdigest()


class DeadLetter(models.Model):
    """A message that could not be processed, byte for byte as it was sent to its `.dlq` topic.

    Key, value and headers are kept as the broker gave them (bytea), since a
    message may carry NUL bytes, invalid UTF-8 or a binary format such as the
    Confluent wire format; the previews are what the admin shows and searches.
    """

    id = models.BigAutoField(primary_key=True)
    original_topic = models.CharField(max_length=200, db_index=True)
    original_partition = models.IntegerField()
    original_offset = models.BigIntegerField()
    original_timestamp = models.BigIntegerField(null=True, blank=True)
    consumer_group = models.CharField(max_length=200)
    dead_letter_topic = models.CharField(max_length=200)
    key = models.BinaryField(null=True, blank=True)
    value = models.BinaryField(null=True, blank=True)
    # Two parallel arrays rather than a JSON list: header values are bytes
    # too, and a name may repeat, so order is part of the message.
    header_names = ArrayField(models.BinaryField(), default=list, blank=True)
    header_values = ArrayField(models.BinaryField(), default=list, blank=True)
    key_preview = models.TextField(blank=True, default="")
    value_preview = models.TextField(blank=True, default="", help_text="The value decoded as UTF-8 (undecodable bytes escaped), truncated.")
    exception_class = models.CharField(max_length=200, db_index=True)
    exception_message = models.TextField()
    stack_trace = models.TextField()
    attempts = models.PositiveIntegerField()
    # `content_digest` of key, value and headers: with the delivery's place, it names one message.
    content_digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    replayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # One row per dead-lettered delivery, even if the consumer crashed
            # after publishing the dead letter and did it again. The content
            # is part of it: a broker that came back empty reuses offsets, and
            # another message at a stored offset is another dead letter.
            models.UniqueConstraint(
                fields=["original_topic", "original_partition", "original_offset", "consumer_group", "content_digest"],
                name="dead_letter_unique_message",
            )
        ]

    def __str__(self) -> str:
        return f"{self.original_topic}[{self.original_partition}]@{self.original_offset}: {self.exception_class}"

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        """The original headers, in order, as (name, value bytes)."""
        return [
            (bytes(name).decode(errors="replace"), bytes(value))
            for name, value in zip(self.header_names, self.header_values, strict=True)
        ]
