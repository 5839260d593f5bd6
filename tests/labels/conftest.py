"""The export tests share one real pseudo-labelling run (``labelled_run`` in tests/conftest.py)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "jobs"))
import export_labels  # noqa: E402


@pytest.fixture(scope="session")
def run(labelled_run) -> str:
    return labelled_run


@pytest.fixture
def exported(run, tmp_path):
    """``exported(fmt, *flags)`` runs the export job and returns its --out."""

    def go(fmt: str, *flags: str) -> Path:
        out = tmp_path / fmt / ("labels.json" if fmt in ("coco", "coco-results", "labelstudio") else "")
        assert export_labels.main(["--run", run, "--format", fmt, "--out", str(out), "--no-progress", *flags]) == 0
        return out

    return go
