"""Take over Category and Product from the checkout app, tables and data as they are.

State only: the tables `checkout_category` and `checkout_product` already
exist (checkout 0001) and keep their names, indexes and constraints.
"""

import uuid
from decimal import Decimal

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("checkout", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='Category',
                    fields=[
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ('name', models.CharField(max_length=100, unique=True)),
                        ('description', models.TextField(blank=True, default='', max_length=1000)),
            ],
            options={
                'verbose_name_plural': 'categories',
                'db_table': 'checkout_category',
                'ordering': ['name'],
            },
        ),
        migrations.CreateModel(
            name='Product',
            fields=[
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('sku', models.CharField(max_length=50, unique=True)),
                ('name', models.CharField(max_length=200)),
                ('description', models.TextField(blank=True, default='')),
                ('price', models.DecimalField(decimal_places=2, max_digits=12, validators=[django.core.validators.MinValueValidator(Decimal('0.01'))])),
                ('inventory_quantity', models.PositiveIntegerField()),
                ('is_active', models.BooleanField(default=True)),
                ('category', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='products', to='catalog.category')),
            ],
            options={
                'db_table': 'checkout_product',
                'ordering': ['name', 'id'],
                'indexes': [models.Index(fields=['category', 'is_active'], name='checkout_pr_categor_7ecef1_idx')],
                'constraints': [models.CheckConstraint(condition=models.Q(('inventory_quantity__gte', 0)), name='product_inventory_not_negative'), models.CheckConstraint(condition=models.Q(('price__gte', Decimal('0.01'))), name='product_price_positive')],
            },
        ),
            ],
            database_operations=[],
        ),
    ]
