"""Separating a whole collection: many songs into one output folder, on all local cores
or a Ray cluster, resumable, with whole-job progress (``stream-sep separate DIR -o OUT``).

    discovery   find the songs under folders; each one's output folder
    manifest    OUT/stream-sep-manifest.json: what is done, with which model and settings
    worker      one song in any worker: load the model once, separate, describe the stems
    local       this process or a pool of worker processes (--jobs)
    cluster     Ray tasks (--ray ADDRESS|auto; pip install stream-sep[cluster])
    progress    the job's progress bar or lines
    job         the order of it all: check, plan, connect, lock, run, record
"""

from stream_sep.batch.job import BatchRequest, JobReport, run_job

__all__ = ["BatchRequest", "JobReport", "run_job"]
