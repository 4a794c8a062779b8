"""One async Quart API replacing five Flask + PostgreSQL services."""

__version__ = "0.1.0"
