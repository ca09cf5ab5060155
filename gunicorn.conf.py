"""gunicorn's settings for DonorHub in production (docs/deploy.md):

    gunicorn -c gunicorn.conf.py --bind 10.0.1.11:8000 wsgi:app

Every value here can still be overridden on the command line.
"""

import os

import gunicorn
import gunicorn.http.wsgi

#: About two sync workers per core (docs/deploy.md sizes them for sign-in's argon2id).
workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * (os.cpu_count() or 1))
worker_class = "sync"
#: A request taking longer is ended; nginx's proxy_read_timeout (65 s) is a little above.
timeout = 60
graceful_timeout = 20
#: gunicorn's own request-line and header limits; bodies are limited by the app
#: (MAX_CONTENT_LENGTH) and by nginx (client_max_body_size).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
accesslog = "-"
errorlog = "-"

# gunicorn writes "Server: gunicorn" into every response itself, after the app has built
# its headers, so the app cannot remove it. It reads the value from gunicorn.http.wsgi's
# SERVER each time it builds a response; an empty value leaves no name of the software.
gunicorn.SERVER = ""
gunicorn.http.wsgi.SERVER = ""  # type: ignore[attr-defined]
