"""`python -m ops.drills SCENARIO`: Django is set up first, since the report reads the platform's models."""
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ecommerce.settings.local")
django.setup()

from ops.drills.runner import main  # noqa: E402

main()
