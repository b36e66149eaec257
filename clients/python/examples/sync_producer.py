"""Enqueuing from synchronous code (a script, a Django or Flask view):

python examples/sync_producer.py
"""

import os

from jobwire import SyncClient

with SyncClient(os.environ.get("JOBWIRE_TARGET", "127.0.0.1:50051")) as jobs:
    result = jobs.enqueue("emails", {"to": "grace@example.com"}, priority=10)
    print("enqueued", result.job_id, result.state.name.lower())
