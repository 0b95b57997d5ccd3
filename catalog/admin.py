from django.contrib import admin

from catalog.models import Category, Product


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "created_at"]
    search_fields = ["name"]
    readonly_fields = ["id", "created_at", "updated_at"]


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "category", "price", "inventory_quantity", "is_active", "updated_at"]
    list_filter = ["is_active", "category"]
    search_fields = ["sku", "name"]
    readonly_fields = ["id", "created_at", "updated_at"]
    list_select_related = ["category"]
