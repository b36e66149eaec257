"""Issue 9's measure of the house: adding a JobSpec field that the broker stores and
returns touches the proto, the api mapping and the model, and nothing else in the
broker (tools/add_field.py does it in a scratch copy, end to end on a real broker)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_new_stored_field_changes_at_most_four_broker_files() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools/add_field.py")],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "round trip: note stored, returned by GetJob and Lease" in done.stdout
    hand = done.stdout.split("changed by hand:")[1].split("generated:")[0].split()
    assert sorted(f for f in hand if f.startswith("broker/")) == [
        "broker/jobwire_broker/api/requests.py",
        "broker/jobwire_broker/api/responses.py",
        "broker/jobwire_broker/domain/model.py",
    ]
