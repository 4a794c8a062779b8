"""The arq worker: `arq jobs.worker.WorkerSettings`."""
