"""`arq jobs.worker.WorkerSettings`: REDIS_URL, DATABASE_URL and the rest from the env."""

from typing import Any

from jobs.options import worker_options
from service.config import load_settings

# Read once, at import. arq takes the Worker's arguments as a dict as well as a class
# (arq.worker.get_kwargs); what each option means is told in `jobs.options`.
WorkerSettings: dict[str, Any] = worker_options(load_settings())
