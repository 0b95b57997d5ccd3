from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from orders.models import Order, OrderItem, PaymentAuditWatermark, PaymentTransaction, ProcessedEvent
from orders.services import orders_flag_clear


class OrderItemInline(admin.TabularInline):
    model = OrderItem
    extra = 0
    fields = ["product_sku", "product_name", "quantity", "price_snapshot", "subtotal"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class PaymentTransactionInline(admin.StackedInline):
    model = PaymentTransaction
    extra = 0
    can_delete = False
    fields = [
        "status", "amount", "payment_method", "external_transaction_id", "failure_reason", "attempt_count", "created_at",
        "refunded_at", "refund_external_transaction_id", "refund_reason",
    ]  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ProcessedEvent)
class ProcessedEventAdmin(admin.ModelAdmin):
    list_display = ["event_id", "event_type", "outcome", "processed_at"]
    list_filter = ["event_type", "outcome"]
    search_fields = ["=event_id", "detail"]
    readonly_fields = ["event_id", "event_type", "topic", "outcome", "detail", "processed_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a forgotten event would be applied again on redelivery


class FlaggedFilter(admin.SimpleListFilter):
    title = "flagged for a human"
    parameter_name = "flagged"

    def lookups(self, request, model_admin):
        return [("yes", "Flagged"), ("no", "Not flagged")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(flagged_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(flagged_at__isnull=True)
        return queryset


class PaymentInDoubtFilter(admin.SimpleListFilter):
    title = "payment in doubt"
    parameter_name = "payment_in_doubt"

    def lookups(self, request, model_admin):
        return [("yes", "In doubt"), ("no", "Not in doubt")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(payment_unknown_since__isnull=False)
        if self.value() == "no":
            return queryset.filter(payment_unknown_since__isnull=True)
        return queryset


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    """Read-only: orders change state through the API and the consumer, never by hand.

    `payment_unknown_since` marks a payment in doubt (the provider's answer was
    unknown; reconciliation asks it again). Reconciliation flags an order it could not settle (`flagged_at`, `flag_reason`);
    once a human has looked, "clear the flag" gives it a fresh reconciliation budget.
    """

    list_display = [
        "order_number", "status", "payment_status", "payment_unknown_since", "customer_email", "subtotal", "created_at",
        "flagged_at",
    ]  # fmt: skip
    list_filter = [FlaggedFilter, PaymentInDoubtFilter, "status", "payment_status", "created_at"]
    actions = ["clear_flag"]
    search_fields = ["order_number", "customer_email", "id"]
    date_hierarchy = "created_at"
    readonly_fields = [field.name for field in Order._meta.fields]
    inlines = [OrderItemInline, PaymentTransactionInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_reconcile_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    @admin.action(description="Clear the flag and let reconciliation try again", permissions=["reconcile"])
    def clear_flag(self, request: HttpRequest, queryset: QuerySet) -> None:
        cleared = orders_flag_clear(ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"{cleared} order(s) unflagged; reconciliation picks them up again.", messages.SUCCESS)


@admin.register(PaymentAuditWatermark)
class PaymentAuditWatermarkAdmin(admin.ModelAdmin):
    """How far the payment audit has read the provider's charges (docs/runbook.md "The payment audit and the ledger").

    A superuser may move `charge_id` back to audit again from a charge (refunds
    are idempotent); nothing else is edited by hand.
    """

    list_display = ("name", "charge_id", "charge_created_at", "updated_at")
    fields = ("name", "charge_id", "charge_created_at", "updated_at")
    readonly_fields = ("name", "charge_created_at", "updated_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
