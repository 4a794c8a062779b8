"""What any ASGI server serves: `hypercorn service.asgi:app`."""

from service.app import create_app

app = create_app(owns_telemetry=True)
