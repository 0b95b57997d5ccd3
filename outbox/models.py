import uuid

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q


class OutboxStatus(models.TextChoices):
    PENDING = "PENDING"
    PUBLISHED = "PUBLISHED"
    # Given up after OUTBOX_MAX_ATTEMPTS transient failures: the periodic
    # requeue gives it fresh attempts (the broker may be back).
    FAILED = "FAILED"
    # Refused for good (too large, unserialisable): sending it again cannot
    # help, so only an operator requeues it, once the cause is gone.
    REFUSED = "REFUSED"


class OutboxEvent(models.Model):
    """An event to publish, written in the same transaction as the change it reports.

    `id` grows with insertion order, which is what the relay uses to keep one
    aggregate's events in order; `event_id` is the event's public identity.
    """

    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    aggregate_type = models.CharField(max_length=50)
    aggregate_id = models.CharField(max_length=64)
    topic = models.CharField(max_length=200)
    key = models.CharField(max_length=200)
    event_type = models.CharField(max_length=100)
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    headers = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=OutboxStatus.choices, default=OutboxStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["aggregate_type", "aggregate_id", "id"]),
            # The relay's work queue: only PENDING rows, in insertion order.
            models.Index(fields=["id"], name="outbox_pending_idx", condition=Q(status="PENDING")),
            # The rows that can hold an aggregate's later rows back: FAILED,
            # REFUSED, or PENDING with a retry time. Few, so the claim's
            # "nothing earlier is stuck" test is a probe of a small index
            # instead of a scan of the whole outbox (outbox/relay.py).
            models.Index(
                fields=["aggregate_type", "aggregate_id", "id"],
                name="outbox_blocking_idx",
                condition=~Q(status="PUBLISHED") & (~Q(status="PENDING") | Q(next_attempt_at__isnull=False)),
            ),
            models.Index(fields=["status", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.aggregate_id} ({self.status})"
