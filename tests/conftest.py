"""Fixtures more than one test folder shares."""

import sys
from pathlib import Path

import pytest

JOBS = Path(__file__).resolve().parents[1] / "jobs"


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
