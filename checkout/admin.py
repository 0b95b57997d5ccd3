from django.contrib import admin

from checkout.models import Cart, CartItem, IdempotencyRecord


class CartItemInline(admin.TabularInline):
    model = CartItem
    extra = 0
    fields = ["product", "quantity", "price_snapshot", "created_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Cart)
class CartAdmin(admin.ModelAdmin):
    """Read-only: carts belong to their shoppers."""

    list_display = ["session_id", "created_at", "updated_at", "expires_at"]
    search_fields = ["session_id"]
    readonly_fields = ["id", "session_id", "created_at", "updated_at", "expires_at"]
    inlines = [CartItemInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):
    list_display = ["key", "method", "path", "response_status", "created_at", "expires_at"]
    list_filter = ["response_status", "method"]
    search_fields = ["key"]
    readonly_fields = [field.name for field in IdempotencyRecord._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a deleted record would let a retried request order again

    def has_change_permission(self, request, obj=None) -> bool:
        return False
