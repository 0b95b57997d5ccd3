"""`python -m ops.drills SCENARIO` (or `soak ...`): Django is set up first, since the report reads the platform's models."""
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ecommerce.settings.local")
django.setup()

from ops.drills.runner import main  # noqa: E402
from ops.soak.runner import main as soak_main  # noqa: E402

if sys.argv[1:2] == ["soak"]:
    soak_main(sys.argv[2:])
else:
    main()
