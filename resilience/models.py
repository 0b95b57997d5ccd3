from django.db import models


class DeadLetter(models.Model):
    """A message that could not be processed, as it was sent to its `.dlq` topic."""

    id = models.BigAutoField(primary_key=True)
    original_topic = models.CharField(max_length=200, db_index=True)
    original_partition = models.IntegerField()
    original_offset = models.BigIntegerField()
    original_timestamp = models.BigIntegerField(null=True, blank=True)
    consumer_group = models.CharField(max_length=200)
    dead_letter_topic = models.CharField(max_length=200)
    key = models.TextField(null=True, blank=True)
    value = models.TextField(help_text="The original value, decoded as UTF-8 (invalid bytes replaced).")
    headers = models.JSONField(default=list, help_text="The original headers, [name, value] pairs.")
    exception_class = models.CharField(max_length=200, db_index=True)
    exception_message = models.TextField()
    stack_trace = models.TextField()
    attempts = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    replayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # One row per dead-lettered delivery, even if the consumer crashed
            # after publishing the dead letter and did it again.
            models.UniqueConstraint(
                fields=["original_topic", "original_partition", "original_offset", "consumer_group"],
                name="dead_letter_unique_delivery",
            )
        ]

    def __str__(self) -> str:
        return f"{self.original_topic}[{self.original_partition}]@{self.original_offset}: {self.exception_class}"
