from django.contrib import admin

from orders.models import Order, OrderItem


class OrderItemInline(admin.TabularInline):
    model = OrderItem
    extra = 0
    fields = ["product_sku", "product_name", "quantity", "price_snapshot", "subtotal"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    """Read-only: orders change state through the API and the consumer, never by hand."""

    list_display = ["order_number", "status", "payment_status", "customer_email", "subtotal", "created_at"]
    list_filter = ["status", "payment_status", "created_at"]
    search_fields = ["order_number", "customer_email", "id"]
    date_hierarchy = "created_at"
    readonly_fields = [field.name for field in Order._meta.fields]
    inlines = [OrderItemInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
