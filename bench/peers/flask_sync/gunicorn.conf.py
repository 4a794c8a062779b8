"""gunicorn settings for the Flask twin: 2 processes x 4 threads (gthread)."""

import os

bind = os.environ.get("BIND", "127.0.0.1:8001")
workers = 2
threads = 4
worker_class = "gthread"
backlog = 2048  # gunicorn's default
# The app logs one JSON line per request itself (as the service does); no second access log.
accesslog = None
errorlog = "-"
loglevel = "info"
# The backend seed's `--timeout 120`: /slow may take up to 30 s.
timeout = 120
# gunicorn 24+ opens a control socket in $HOME; two instances would fight over it.
control_socket_disable = True
