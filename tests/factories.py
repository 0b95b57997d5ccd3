from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from catalog.models import Category, Product
from orders.models import Order


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Category

    name = factory.Sequence(lambda n: f"Category {n}")
    description = "A category"


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    name = factory.Sequence(lambda n: f"Product {n}")
    description = "A product"
    price = Decimal("19.99")
    inventory_quantity = 100
    category = factory.SubFactory(CategoryFactory)
    is_active = True


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "password123")

    @factory.post_generation
    def manager(self, create, extracted, **kwargs):
        if extracted:
            self.groups.add(Group.objects.get_or_create(name="manager")[0])
        if create:
            self.save()


class OrderFactory(factory.django.DjangoModelFactory):
    """An order as checkout leaves it (no items, no outbox row): for tests of what reads orders, not of checkout."""

    class Meta:
        model = Order

    order_number = factory.Sequence(lambda n: f"ORD-20261201-{n:06d}")
    customer_name = "Ada Lovelace"
    customer_email = "ada@example.com"
    customer_phone = "+15551234567"
    shipping_address = factory.LazyFunction(
        lambda: {"street": "1 Analytical Way", "city": "London", "state": "LDN", "postalCode": "N1 1AA", "country": "GB"}
    )
    subtotal = Decimal("19.99")
    status = "PENDING"
