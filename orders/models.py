import uuid

from django.db import models
from django.db.models import Q


class OrderStatus(models.TextChoices):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    PAID = "PAID"
    FULFILLED = "FULFILLED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class PaymentStatus(models.TextChoices):
    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    REFUNDED = "REFUNDED"  # charged, then given back (the order was cancelled or failed meanwhile)


# docs/contract.md "Orders and payments": the only moves an order may make.
ORDER_TRANSITIONS: dict[str, frozenset[str]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.PROCESSING, OrderStatus.CANCELLED}),
    OrderStatus.PROCESSING: frozenset({OrderStatus.PAID, OrderStatus.FAILED, OrderStatus.CANCELLED}),
    OrderStatus.PAID: frozenset({OrderStatus.FULFILLED}),
    OrderStatus.FULFILLED: frozenset(),
    OrderStatus.FAILED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}


# Not yet PAID, FAILED or CANCELLED: what order management still owes an order
# (reconciliation re-drives these; the stuck-order gauge and the drills count them).
UNSETTLED_STATUSES: tuple[str, ...] = (OrderStatus.PENDING, OrderStatus.PROCESSING)


class Order(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    order_number = models.CharField(max_length=32, unique=True)
    cart_id = models.UUIDField(null=True, blank=True)
    customer_name = models.CharField(max_length=200)
    customer_email = models.EmailField(db_index=True)
    customer_phone = models.CharField(max_length=21)
    shipping_address = models.JSONField()
    subtotal = models.DecimalField(max_digits=14, decimal_places=2)
    status = models.CharField(max_length=16, choices=OrderStatus.choices, default=OrderStatus.PENDING)
    payment_status = models.CharField(
        max_length=16, choices=PaymentStatus.choices, default=PaymentStatus.PENDING
    )
    correlation_id = models.CharField(max_length=128, blank=True, default="")
    cancellation_reason = models.TextField(blank=True, default="")
    tracking_number = models.CharField(max_length=100, blank=True, default="")
    carrier = models.CharField(max_length=100, blank=True, default="")
    fulfillment_notes = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # Reconciliation (orders/reconciliation.py): how often the order was re-driven,
    # when it may be next, and, once that budget is spent, the flag for a human.
    reconcile_attempts = models.PositiveSmallIntegerField(default=0)
    reconcile_next_at = models.DateTimeField(null=True, blank=True)
    flagged_at = models.DateTimeField(null=True, blank=True)
    flag_reason = models.TextField(blank=True, default="")
    # Payment in doubt: since when nobody knows whether the provider charged (an unknown answer), until
    # reconciliation has the provider's word (orders/payment_resolution.py). Never a decline.
    payment_unknown_since = models.DateTimeField(null=True, blank=True)
    # How many times the provider was asked to charge (the same key each time): bounded by PAYMENT_UNKNOWN_MAX_CHARGES.
    payment_charge_requests = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-order_number"]
        indexes = [
            models.Index(fields=["status", "-created_at"]),
            # The reconciler's work queue: the few orders not yet settled.
            models.Index(
                fields=["updated_at"],
                name="orders_unsettled_idx",
                condition=Q(status__in=["PENDING", "PROCESSING"]),
            ),
            models.Index(fields=["flagged_at"], name="orders_flagged_idx", condition=Q(flagged_at__isnull=False)),
            models.Index(
                fields=["payment_unknown_since"],
                name="orders_payment_unknown_idx",
                condition=Q(payment_unknown_since__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.order_number


class OrderItem(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    # Snapshots, not foreign keys: an order keeps what was bought even if the
    # product is later renamed, repriced or removed.
    product_id = models.UUIDField()
    product_sku = models.CharField(max_length=50)
    product_name = models.CharField(max_length=200)
    quantity = models.PositiveIntegerField()
    price_snapshot = models.DecimalField(max_digits=12, decimal_places=2)
    subtotal = models.DecimalField(max_digits=14, decimal_places=2)

    class Meta:
        ordering = ["product_sku", "id"]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.product_sku}"


class PaymentMethod(models.TextChoices):
    CARD = "CARD"


class PaymentTransaction(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    order = models.OneToOneField(Order, on_delete=models.PROTECT, related_name="payment")
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    payment_method = models.CharField(max_length=20, choices=PaymentMethod.choices, default=PaymentMethod.CARD)
    status = models.CharField(max_length=16, choices=PaymentStatus.choices)
    external_transaction_id = models.CharField(max_length=100, null=True, blank=True)
    failure_reason = models.TextField(null=True, blank=True)
    attempt_count = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    # Set when the charge was given back (status REFUNDED).
    refunded_at = models.DateTimeField(null=True, blank=True)
    refund_external_transaction_id = models.CharField(max_length=100, null=True, blank=True)
    refund_reason = models.TextField(blank=True, default="")

    def __str__(self) -> str:
        return f"{self.order_id} {self.status}"


class ProcessedEventOutcome(models.TextChoices):
    PROCESSED = "PROCESSED"
    SKIPPED = "SKIPPED"  # an illegal transition (the order was cancelled meanwhile), recorded, not applied
    # The provider's answer was unknown (time-out, reset, 5xx, breaker open): the order stays PROCESSING,
    # in doubt, and reconciliation asks the provider for the charge under the same key.
    PAYMENT_UNKNOWN = "PAYMENT_UNKNOWN"


class ProcessedEvent(models.Model):
    """An event this service has applied; the unique id makes a redelivery a no-op."""

    event_id = models.UUIDField(primary_key=True)
    event_type = models.CharField(max_length=100)
    topic = models.CharField(max_length=200)
    outcome = models.CharField(max_length=16, choices=ProcessedEventOutcome.choices)
    detail = models.TextField(blank=True, default="")
    processed_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} ({self.outcome})"


class PaymentAuditWatermark(models.Model):
    """How far the payment audit (orders/audit.py) has read the provider's charges, which it lists oldest first.

    One row per audit. Nothing more is owed for any charge up to and
    including `charge_id`: a run resumes after it, so it reads only what was
    charged since. Moved by compare-and-set on `charge_id`, so of two runs at
    once only one moves it.
    """

    name = models.CharField(max_length=50, primary_key=True)
    # The provider's id of the last charge settled; empty: from the provider's first charge.
    charge_id = models.CharField(max_length=100, blank=True, default="")
    charge_created_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} after {self.charge_id or 'nothing'}"
