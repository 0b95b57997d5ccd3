from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from catalog.models import Category, Product

DEMO_MANAGER = ("manager", "manager123")
MANAGER_ADMIN_APPS = ["catalog", "checkout", "orders", "outbox", "deadletters", "django_celery_beat"]

DEMO_CATALOG = {
    "Books": [
        ("BOOK-DDIA", "Designing Data-Intensive Applications", "45.50", 100),
        ("BOOK-RELEASE-IT", "Release It!", "39.95", 100),
    ],
    "Electronics": [
        ("ELEC-KEYBOARD", "Mechanical Keyboard", "89.00", 50),
        ("ELEC-HEADPHONES", "Noise-cancelling Headphones", "199.99", 25),
    ],
    "Home": [
        ("HOME-MUG", "Coffee Mug", "12.00", 500),
    ],
}


class Command(BaseCommand):
    help = "Create the demo catalog and the demo manager (idempotent; refused in production)."

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        if settings.SETTINGS_MODULE.endswith(".production"):
            raise CommandError("The demo manager must never exist in production.")
        group, _ = Group.objects.get_or_create(name=settings.MANAGER_GROUP_NAME)
        username, password = DEMO_MANAGER
        user, created = get_user_model().objects.get_or_create(username=username, defaults={"is_staff": True})
        if created:
            user.set_password(password)
            user.save()
        user.groups.add(group)
        # Managers read everything in the admin and edit the catalog there.
        group.permissions.set(
            Permission.objects.filter(content_type__app_label__in=MANAGER_ADMIN_APPS, codename__startswith="view_")
            | Permission.objects.filter(
                content_type__app_label="catalog", codename__in=["change_product", "change_category"]
            )
        )
        for category_name, products in DEMO_CATALOG.items():
            category, _ = Category.objects.get_or_create(
                name=category_name, defaults={"description": f"Demo {category_name.lower()}"}
            )
            for sku, name, price, quantity in products:
                Product.objects.get_or_create(
                    sku=sku,
                    defaults={
                        "name": name,
                        "price": Decimal(price),
                        "inventory_quantity": quantity,
                        "category": category,
                    },
                )
        self.stdout.write(f"demo catalog ready; manager login {username}/{password}")
