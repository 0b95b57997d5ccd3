"""One module per `manage.py` command of `checkout`."""
