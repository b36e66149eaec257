"""Queue names and job ids. A job id is `<queue>:<sequence>`, so any replica can find a
job's keys (and hash slot) from its id alone."""

import re

from .errors import FieldViolation, invalid

QUEUE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}", re.ASCII)
SEQ_RE = re.compile(r"[1-9][0-9]{0,17}", re.ASCII)  # as issued: no sign, no leading zero
QUEUE_RULE = "must be 1-128 of A-Z a-z 0-9 _ - . and start with a letter or digit"


def queue_problem(queue: str) -> str | None:
    if not queue:
        return "is required"
    return None if QUEUE_RE.fullmatch(queue) else QUEUE_RULE


def parse_job_id(job_id: str, field: str = "job_id") -> tuple[str, int]:
    queue, sep, seq = job_id.rpartition(":")
    if not job_id:
        raise invalid([FieldViolation(field, "is required")])
    if not sep or queue_problem(queue) or not SEQ_RE.fullmatch(seq):
        raise invalid([FieldViolation(field, "must be a job id of the form <queue>:<number>")])
    return queue, int(seq)


def job_id(queue: str, seq: int) -> str:
    return f"{queue}:{seq}"
