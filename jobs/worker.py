"""`arq jobs.worker.WorkerSettings`: REDIS_URL, DATABASE_URL and the rest from the env."""

from typing import Any

from jobs.options import worker_options
from service.config import load_settings

# Read once, at import: arq imports this module and reads the class's attributes.
_OPTIONS: dict[str, Any] = worker_options(load_settings())


class WorkerSettings:
    """Read by arq; what each option means is told in `jobs.options`."""

    functions = _OPTIONS["functions"]
    cron_jobs = _OPTIONS["cron_jobs"]
    on_startup = _OPTIONS["on_startup"]
    on_shutdown = _OPTIONS["on_shutdown"]
    redis_settings = _OPTIONS["redis_settings"]
    queue_name = _OPTIONS["queue_name"]
    job_serializer = _OPTIONS["job_serializer"]
    job_deserializer = _OPTIONS["job_deserializer"]
    health_check_interval = _OPTIONS["health_check_interval"]
    job_completion_wait = _OPTIONS["job_completion_wait"]
    max_tries = _OPTIONS["max_tries"]
    job_timeout = _OPTIONS["job_timeout"]
    keep_result = _OPTIONS["keep_result"]
