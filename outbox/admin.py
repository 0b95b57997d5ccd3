import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from outbox.models import OutboxEvent, OutboxStatus
from outbox.services import dead_letters_replay, dead_letters_resolve, outbox_rows_requeue
from resilience.models import DeadLetter


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    """Read-only: a payload is a record of what happened and is never edited."""

    list_display = ["id", "event_type", "topic", "aggregate_id", "order_number", "status", "attempts", "created_at", "published_at"]
    list_filter = ["status", "event_type", "topic", "created_at"]
    search_fields = ["aggregate_id", "=event_id", "payload__orderNumber"]
    date_hierarchy = "created_at"
    actions = ["requeue_failed"]
    readonly_fields = [
        "event_id", "aggregate_type", "aggregate_id", "topic", "key", "event_type", "payload_pretty",
        "headers", "status", "attempts", "next_attempt_at", "last_error", "created_at", "published_at",
    ]  # fmt: skip
    exclude = ["payload"]

    @admin.display(description="order number")
    def order_number(self, obj: OutboxEvent) -> str:
        return obj.payload.get("orderNumber", "") if isinstance(obj.payload, dict) else ""

    @admin.display(description="payload")
    def payload_pretty(self, obj: OutboxEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True))

    @admin.action(description="Requeue selected FAILED rows", permissions=["change"])
    def requeue_failed(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        requeued = outbox_rows_requeue(ids=list(queryset.filter(status=OutboxStatus.FAILED).values_list("id", flat=True)))
        self.message_user(request, f"Requeued {requeued} FAILED row(s); other rows were left alone.", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: OutboxEvent | None = None) -> bool:
        return False  # deleting a PENDING row would lose an event; retention purges the rest

    def has_change_permission(self, request: HttpRequest, obj: OutboxEvent | None = None) -> bool:
        # The change permission guards the requeue action; the form stays read-only.
        return obj is None and super().has_change_permission(request, obj)


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    """Dead letters: inspect, correct the value if need be, replay or resolve."""

    list_display = [
        "id", "original_topic", "original_partition", "original_offset", "exception_class", "attempts",
        "created_at", "replayed_at", "resolved_at",
    ]  # fmt: skip
    list_filter = ["original_topic", "exception_class", "consumer_group", ("resolved_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["key", "exception_message", "value"]
    date_hierarchy = "created_at"
    actions = ["replay", "resolve"]
    # The value stays editable: correcting a bad message is how some are fixed before a replay.
    readonly_fields = [
        "original_topic", "original_partition", "original_offset", "original_timestamp", "consumer_group",
        "dead_letter_topic", "key", "headers", "exception_class", "exception_message", "stack_trace_pretty",
        "attempts", "created_at", "replayed_at", "resolved_at",
    ]  # fmt: skip
    exclude = ["stack_trace"]

    @admin.display(description="stack trace")
    def stack_trace_pretty(self, obj: DeadLetter) -> str:
        return format_html("<pre>{}</pre>", obj.stack_trace)

    @admin.action(description="Replay selected to their original topic (through the outbox)", permissions=["change"])
    def replay(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        report = dead_letters_replay(ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"Replayed {report.replayed} dead letter(s).", messages.SUCCESS)
        for refusal in report.refused:
            self.message_user(request, refusal, messages.WARNING)

    @admin.action(description="Mark selected as resolved", permissions=["change"])
    def resolve(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        resolved = dead_letters_resolve(ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"Resolved {resolved} dead letter(s).", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: DeadLetter | None = None) -> bool:
        return False
