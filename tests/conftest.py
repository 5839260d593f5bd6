"""Fixtures more than one test folder shares, and the loopback rule for every Ray the tests start."""

import os
import sys
from pathlib import Path

import pytest

JOBS = Path(__file__).resolve().parents[1] / "jobs"

# Every Ray a test starts (ray.init, ray.cluster_utils.Cluster, a job's own local Ray, in this process or a
# subprocess, which inherits the variable) takes 127.0.0.1 as its node address, and its servers then listen on
# loopback only. Ray reads this variable (ray/_private/ray_constants.py, ENABLE_RAY_CLUSTER) to decide between
# the loopback address and the machine's network address; despite its name it applies on Linux too.
# tests/engine/test_loopback.py checks the listening sockets.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


@pytest.fixture(scope="session")
def labelled_run(tmp_path_factory) -> str:
    """One real ``jobs/pseudo_label.py`` run on its built-in corpus (six synthetic-world pictures, an 8-frame mp4
    and three photographs, the shipped checkpoint), every mask accepted (``--min-score 0``), with the job's own
    COCO and SA-V exports and QC sheet."""
    sys.path.insert(0, str(JOBS))
    import pseudo_label

    out = tmp_path_factory.mktemp("labels") / "run"
    assert pseudo_label.main(["--output", str(out), "--no-ray", "--min-score", "0"]) == 0
    return str(out)
