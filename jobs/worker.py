"""`arq jobs.worker.WorkerSettings`: REDIS_URL, DATABASE_URL and the rest from the env."""

from jobs.options import worker_options
from service.config import load_settings


class WorkerSettings:
    """Read by arq; the options themselves live in `jobs.options`."""


for _name, _value in worker_options(load_settings()).items():
    setattr(WorkerSettings, _name, _value)
