"""jobs/make_shards.py on every format's fixture: the command users run writes readable shards."""

import json
import sys
from pathlib import Path

import pytest

from pipeline.data import Sample, read_samples
from pipeline.data.fixtures.folder import write_folder
from pipeline.data.fixtures.reasonseg import write_reasonseg
from pipeline.data.fixtures.refcoco import write_refcoco
from pipeline.data.fixtures.refdavis import write_refdavis
from pipeline.data.fixtures.refytvos import write_refytvos
from pipeline.data.fixtures.revos import write_mevis, write_revos

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "jobs"))
import make_shards  # noqa: E402


def convert(tmp_path, fmt, root, *flags):
    out = tmp_path / f"shards-{fmt}"
    assert (
        make_shards.main(["--format", fmt, "--root", str(root), "--out", str(out), "--max-samples", "1", *flags]) == 0
    )
    manifest = json.loads((out / "manifest.json").read_text())
    samples = list(read_samples(str(out / "manifest.json")))
    assert all(isinstance(s, Sample) for s in samples)
    assert manifest["samples"] == len(samples) == len(manifest["shards"]) > 0
    assert manifest["converted_with"]["format"] == fmt
    return samples


def test_every_format(tmp_path):
    write_refcoco(tmp_path / "refer")
    assert {
        s.meta["source"]["dataset"] for s in convert(tmp_path, "refcoco", tmp_path / "refer", "--split", "val")
    } == {"refcoco"}
    write_reasonseg(tmp_path / "reason")
    assert all(
        e.kind == "reasoning"
        for s in convert(tmp_path, "reasonseg", tmp_path / "reason", "--split", "val")
        for e in s.expressions
    )
    write_revos(tmp_path / "revos")
    assert any("/" in s.meta["source"]["original_id"] for s in convert(tmp_path, "revos", tmp_path / "revos"))
    write_mevis(tmp_path / "mevis")
    assert convert(tmp_path, "mevis", tmp_path / "mevis")[0].is_video
    write_refytvos(tmp_path / "ytvos")
    assert convert(tmp_path, "refytvos", tmp_path / "ytvos", "--split", "train")[0].meta["gt"] is not None
    fixture = write_refdavis(tmp_path / "davis")
    assert convert(tmp_path, "refdavis", fixture.root, "--split", "val")
    corpus = write_folder(str(tmp_path / "corpus"))
    samples = convert(tmp_path, "folder", corpus.corpus, "--fps", "2", "--prompts", corpus.prompts_path)
    assert all(len(s.expressions) == len(corpus.prompts) for s in samples)


def test_configuration_errors_are_one_line_and_exit_2(tmp_path, capsys):
    out = ["--out", str(tmp_path / "o")]
    cases = [
        (["--format", "refcoco", "--root", str(tmp_path), "--fps", "2"], "--fps do(es) not apply to --format refcoco"),
        (["--format", "revos", "--root", str(tmp_path), "--keep-test"], "--keep-test do(es) not apply"),
        (["--format", "refcoco", "--root", str(tmp_path)], "--format refcoco needs --split"),
        (["--format", "revos", "--root", str(tmp_path)], "meta_expressions_valid_.json: missing"),
        (["--format", "folder", "--root", str(tmp_path / "nowhere")], "no such folder, file or glob match"),
    ]
    for flags, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            make_shards.main([*flags, *out])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1 and message in err[0], (flags, err)
        assert err[0].startswith("make_shards.py: error: ")
    assert not (tmp_path / "o" / "manifest.json").exists()
