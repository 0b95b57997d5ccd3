"""The one place that reads the process environment for settings.

Every setting that can differ between environments is read here, through
django-environ, so `.env.example` and this module list the same names.
"""
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()

# A local `.env` is a convenience for developers; the process environment wins.
# DJANGO_READ_DOTENV=false ignores it: what a process does with no secret at
# all must not depend on the secret the run command wrote into this checkout.
_dotenv = BASE_DIR / ".env"
if env.bool("DJANGO_READ_DOTENV", default=True) and _dotenv.is_file():
    env.read_env(str(_dotenv), overwrite=False)
