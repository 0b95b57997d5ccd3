from django.contrib import admin

from orders.models import Order, OrderItem, PaymentTransaction, ProcessedEvent


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
    fields = ["status", "amount", "payment_method", "external_transaction_id", "failure_reason", "attempt_count", "created_at"]
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


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    """Read-only: orders change state through the API and the consumer, never by hand."""

    list_display = ["order_number", "status", "payment_status", "customer_email", "subtotal", "created_at"]
    list_filter = ["status", "payment_status", "created_at"]
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
