"""The job layer: runs simulations (claim → engine → persist each round → finish).

`worker.tasks.execute` is the one code path; Celery (distributed) and `EmbeddedWorker`
(embedded: one engine process the API starts) only decide where it runs.
"""
