"""One real pseudo-labelling run (the job's built-in corpus: six synthetic-world pictures, an 8-frame mp4 and three
photographs, the shipped checkpoint), shared by the export tests."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "jobs"))
import export_labels  # noqa: E402
import pseudo_label  # noqa: E402


@pytest.fixture(scope="session")
def run(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("labels") / "run"
    assert pseudo_label.main(["--output", str(out), "--no-ray", "--export", "none"]) == 0
    return str(out)


@pytest.fixture
def exported(run, tmp_path):
    """``exported(fmt, *flags)`` runs the export job and returns its --out."""

    def go(fmt: str, *flags: str) -> Path:
        out = tmp_path / fmt / ("labels.json" if fmt in ("coco", "coco-results", "labelstudio") else "")
        assert export_labels.main(["--run", run, "--format", fmt, "--out", str(out), "--no-progress", *flags]) == 0
        return out

    return go
