"""One module per `manage.py` command of `orders`."""
