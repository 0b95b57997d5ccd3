from django.contrib import admin
from django.urls import include, path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from catalog import apis as catalog_apis
from checkout import apis as checkout_apis
from core.auth import LoginApi, metrics_access
from ecommerce import health
from ecommerce.metrics import metrics
from orders import apis as order_apis


class OrderNumberConverter:
    """Order numbers are short and plain (`ORD-20260131-000001`); anything else is a 404 before any query."""

    regex = "[A-Za-z0-9-]{1,32}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(OrderNumberConverter, "order_number")

api_v1 = [
    path("auth/login", LoginApi.as_view(), name="auth-login"),
    path("categories", catalog_apis.CategoryListApi.as_view(), name="category-list"),
    path("categories/<uuid:category_id>", catalog_apis.CategoryDetailApi.as_view(), name="category-detail"),
    path("products", catalog_apis.ProductListApi.as_view(), name="product-list"),
    path("products/<uuid:product_id>", catalog_apis.ProductDetailApi.as_view(), name="product-detail"),
    path("carts/<str:session_id>", checkout_apis.CartApi.as_view(), name="cart"),
    path("carts/<str:session_id>/items", checkout_apis.CartItemAddApi.as_view(), name="cart-items"),
    path("carts/<str:session_id>/items/<uuid:item_id>", checkout_apis.CartItemApi.as_view(), name="cart-item"),
    path("checkout", checkout_apis.CheckoutApi.as_view(), name="checkout"),
    path("orders", order_apis.OrderListApi.as_view(), name="order-list"),
    path("orders/<order_number:order_number>", order_apis.OrderDetailApi.as_view(), name="order-detail"),
    path("orders/<order_number:order_number>/cancel", order_apis.OrderCancelApi.as_view(), name="order-cancel"),
    path("orders/<order_number:order_number>/fulfill", order_apis.OrderFulfillApi.as_view(), name="order-fulfill"),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("admin/resilience-overview/", include("ecommerce.admin")),
    path("admin/", admin.site.urls),
    path("metrics", metrics_access(metrics), name="metrics"),
]

handler400 = "core.problems.handler400"
handler403 = "core.problems.handler403"
handler404 = "core.problems.handler404"
handler500 = "core.problems.handler500"
