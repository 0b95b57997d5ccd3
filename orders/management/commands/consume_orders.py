from django.core.management.base import BaseCommand

from orders.consumer import consume_orders_forever


class Command(BaseCommand):
    help = "Consume orders.created as order management (group order-service-group) until SIGTERM."

    def handle(self, *args, **options) -> None:
        consume_orders_forever()
