import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from outbox.models import OutboxEvent, OutboxStatus
from outbox.services import outbox_rows_requeue


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

    # REFUSED rows are requeued only from here: the periodic job leaves them
    # for an operator, who requeues them once their cause is gone.
    @admin.action(description="Requeue selected FAILED or REFUSED rows", permissions=["change"])
    def requeue_failed(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        given_up = queryset.filter(status__in=[OutboxStatus.FAILED, OutboxStatus.REFUSED])
        requeued = outbox_rows_requeue(ids=list(given_up.values_list("id", flat=True)))
        self.message_user(
            request, f"Requeued {requeued} FAILED or REFUSED row(s); other rows were left alone.", messages.SUCCESS
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: OutboxEvent | None = None) -> bool:
        return False  # deleting a PENDING row would lose an event; retention purges the rest

    def has_change_permission(self, request: HttpRequest, obj: OutboxEvent | None = None) -> bool:
        # The change permission guards the requeue action; the form stays read-only.
        return obj is None and super().has_change_permission(request, obj)
