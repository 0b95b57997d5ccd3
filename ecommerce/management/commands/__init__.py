"""One module per `manage.py` command of `ecommerce`."""
