import json

from django.contrib import admin
from django.utils.html import format_html

from outbox.models import OutboxEvent


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    """Read-only: payloads are a record of what happened and are never edited."""

    list_display = ["id", "event_type", "topic", "aggregate_id", "status", "attempts", "created_at", "published_at"]
    list_filter = ["status", "event_type", "topic", "created_at"]
    search_fields = ["aggregate_id", "event_id", "payload__orderNumber"]
    date_hierarchy = "created_at"
    exclude = ["payload"]
    readonly_fields = [
        "event_id",
        "aggregate_type",
        "aggregate_id",
        "topic",
        "key",
        "event_type",
        "payload_pretty",
        "headers",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "created_at",
        "published_at",
    ]

    @admin.display(description="payload")
    def payload_pretty(self, obj: OutboxEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True))

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
