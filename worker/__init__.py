"""The job layer: runs simulations (claim → engine → persist each round → finish).

`worker.tasks.execute` is the one code path; Celery (distributed) and the in-process
`EmbeddedWorker` (embedded) only decide where it runs.
"""
