"""The WSGI entry point: `gunicorn wsgi:app`."""

from donorhub import create_app

app = create_app()
