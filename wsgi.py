"""The WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app` (docs/deploy.md)."""

import sys

from config import UnsafeConfiguration
from donorhub import create_app

try:
    app = create_app()
except UnsafeConfiguration:
    # The refusal is one sentence naming the setting: print it without a traceback. The
    # exception still ends the process (gunicorn halts on a worker that fails to boot; a
    # `flask` command exits 1), so nothing serves with an unsafe configuration.
    sys.tracebacklimit = 0
    raise
