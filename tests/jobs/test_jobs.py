"""The jobs run end to end on their built-in fixtures (the shipped checkpoint unless a preset is given, in-process)
and write their reports."""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "jobs"))
import pseudo_label  # noqa: E402

from pipeline.data.fixtures.corpus import PROMPTS as CORPUS_PROMPTS  # noqa: E402
from pipeline.data.fixtures.folder import write_folder  # noqa: E402
from pipeline.data.layouts import FORMATS  # noqa: E402
from pipeline.engine.cli import SHIPPED_CHECKPOINT, fixture_shards, format_table, keep_value, option_value  # noqa: E402
from pipeline.results import decode_mask, load  # noqa: E402


def test_pseudo_label_on_its_built_in_corpus(labelled_run):
    out = Path(labelled_run)
    report = json.loads((out / "_report" / "pseudo_label.json").read_text())
    predictions = load(str(out), "predictions")
    # 6 pictures of the synthetic world, an 8-frame video and 3 photographs; every prompt on every frame.
    frames = predictions[["sample_key", "frame_index"]].drop_duplicates()
    assert predictions.sample_key.nunique() == 10 and len(frames) == 17
    assert sorted(r["category"] for r in report["rows"]) == sorted(CORPUS_PROMPTS)
    assert sum(r["accepted"] for r in report["rows"]) == int((predictions.area > 0).sum())  # min score 0: non-empty
    printed = (out / "_report" / "pseudo_label.txt").read_text()
    assert "exports/coco.json" in printed and "exports/qc/index.html" in printed
    assert (out / "exports" / "qc" / "index.html").is_file() and list((out / "exports" / "sav").glob("*_auto.json"))
    # The quality signals agree with the stored mask (pycocotools reads area and box off the same RLE).
    for _, row in predictions.iterrows():
        rle = {"size": [row.mask_height, row.mask_width], "counts": row.mask_counts.encode()}
        assert row.area == decode_mask(row).sum() == mask_utils.area(rle)
        assert row.area_fraction == pytest.approx(row.area / (row.mask_height * row.mask_width))
        assert list(row.bbox) == ([int(v) for v in mask_utils.toBbox(rle)] if row.area else [0, 0, 0, 0])
        assert row.score == pytest.approx(row.seg_score * row.mask_score, rel=1e-5, abs=1e-7)
        assert 0 <= row.seg_score <= 1 and 0 <= row.mask_score <= 1
        assert np.isnan(row.stability) or 0 <= row.stability <= 1
    # One track row per video and prompt, summarising that video's masks.
    tracks = load(str(out), "tracks")
    videos = predictions[predictions.groupby(["sample_key", "expression_id"]).frame_index.transform("max") > 0]
    assert len(tracks) == len(videos[["sample_key", "expression_id"]].drop_duplicates()) == len(CORPUS_PROMPTS)
    for _, summary in tracks.iterrows():
        frames = videos[(videos.sample_key == summary.sample_key) & (videos.expression_id == summary.expression_id)]
        masks = [decode_mask(r) for _, r in frames.sort_values("frame_index").iterrows()]
        assert summary.frames == len(masks) == 8
        assert summary.present_fraction == pytest.approx(np.mean([m.any() for m in masks]))


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> str:
    """The converter tests' small folder (three little images and a 4-frame mp4), as shards."""
    folder = tmp_path_factory.mktemp("tiny")
    corpus = write_folder(str(folder / "corpus"))
    return fixture_shards(folder, FORMATS["folder"](corpus.corpus, fps=2, prompts=corpus.prompts_path))


@pytest.mark.parametrize(
    "flags", [["--method", "fastv", "--option", "layer=1"], ["--method", "visionzip", "--option", "contextual=0.25"]]
)
def test_attention_baselines_run_from_the_job_command(tmp_path, tiny_corpus, flags):
    """FastV (K = 1: the tiny LLM has two layers) and VisionZip through the job flags, images and a video."""
    out = tmp_path / flags[1]
    args = ["--shards", tiny_corpus, "--output", str(out), "--no-ray", "--keep", "0.2", "--export", "none"]
    assert pseudo_label.main([*args, *flags]) == 0
    predictions, tokens = load(str(out), "predictions"), load(str(out), "tokens")
    assert len(predictions) > 0 and len(load(str(out), "errors")) == 0
    assert set(predictions.method) == {flags[1]} and set(predictions.k) == set(tokens.k) == {146}
    assert all(len(kept) == 146 for kept in tokens.kept)
    assert tokens.lam.isna().all() and (tokens.grid_radius > 0).all()
    # FastV's tokens are each expression's own: one tokens row per prediction; VisionZip's one per frame.
    keys = ["sample_key", "frame_index"]
    if flags[1] == "fastv":
        assert len(tokens) == len(predictions) and tokens.expression_id.notna().all()
        joined = predictions.merge(tokens, on=[*keys, "expression_id"], suffixes=("", "_tokens"))
        assert len(joined) == len(predictions)
    else:
        assert tokens.expression_id.isna().all()
        assert len(tokens) == len(predictions[keys].drop_duplicates()) < len(predictions)


def test_option_flags():
    assert option_value("layer=2") == ("layer", 2) and option_value("contextual=0.25") == ("contextual", 0.25)
    assert option_value("first=grid_center") == ("first", "grid_center")
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=VALUE"):
        option_value("layer")


def test_keep_and_table_helpers():
    assert keep_value("0.2") == 0.2 and keep_value("64") == 64 and isinstance(keep_value("64"), int)
    text = format_table([{"a": 1, "b": 0.123456}, {"a": None, "b": 2.0}], ["a", "b"])
    assert text.splitlines() == ["a  b", "-  ------", "1  0.1235", "   2.0000"]
    with pytest.raises(ValueError):
        keep_value("x")


import eval_refcoco  # noqa: E402
import eval_revos  # noqa: E402
import sweep  # noqa: E402


def test_eval_revos_on_its_fixture_with_png_export(tmp_path, capsys):
    out, png = tmp_path / "revos", tmp_path / "png"
    assert eval_revos.main(["--output", str(out), "--no-ray", "--export-png", str(png)]) == 0
    text = capsys.readouterr().out
    assert "synth-hyperseg, evtp keep 0.2: 4 videos, 24 frames, 0 errors" in text
    report = json.loads((out / "_report" / "eval_revos.json").read_text())
    assert [(r["dataset"], r["category"]) for r in report["rows"]] == [
        ("revos", "referring"),
        ("revos", "reasoning"),
        ("revos", "overall"),
    ]
    assert report["rows"][0]["expressions"] == len(load(str(out), "metrics")) > 0
    predictions = load(str(out), "predictions")
    pngs = sorted(png.glob("Annotations/**/*.png"))
    assert len(pngs) == len(predictions) > 0
    assert all(p.relative_to(png).parts[1:3] == ("synth", "valid") for p in pngs)  # ids with slashes: folders again
    _assert_overlay(out, text, panels=4)


def test_eval_refcoco_on_its_fixture(tmp_path, capsys):
    out = tmp_path / "refcoco"
    assert eval_refcoco.main(["--output", str(out), "--no-ray"]) == 0
    report = json.loads((out / "_report" / "eval_refcoco.json").read_text())
    assert {r["dataset"] for r in report["rows"]} == {"refcoco", "reasonseg"}
    metrics = load(str(out), "metrics")
    for row in report["rows"]:
        group = metrics[metrics.dataset == row["dataset"]]
        assert row["cIoU"] == pytest.approx(100 * group.intersection.sum() / (group.union.sum() + 1e-10), rel=1e-6)
    _assert_overlay(out, capsys.readouterr().out, panels=4)


def _assert_overlay(out: Path, text: str, panels: int) -> None:
    """The job printed where its overlay is, and the overlay holds ``panels`` frames with the mask's colour."""
    from PIL import Image

    from pipeline.viz import MASK_COLOUR

    overlay = out / "_report" / "overlay.png"
    assert f"overlay: {overlay}" in text
    pixels = np.asarray(Image.open(overlay).convert("RGB"))
    predictions = load(str(out), "predictions")
    drawn = predictions[["sample_key", "expression_id"]].drop_duplicates("sample_key").head(panels)
    drawn_masks = predictions.merge(drawn).apply(lambda row: decode_mask(row).any(), axis=1)
    assert (pixels == MASK_COLOUR).all(axis=-1).any() == drawn_masks.any()  # the masks are drawn
    assert pixels.shape[1] > panels * 64  # one panel per sample, its longer side 256 px


def test_sweep_runs_every_family_and_writes_one_table_and_a_plot(tmp_path, capsys):
    eval_revos.fixture(tmp_path / "data")
    shard = str(sorted((tmp_path / "data" / "shards").glob("*.tar"))[0])  # one video: the test stays short
    out = tmp_path / "sweep"
    flags = ["--shards", shard, "--output", str(out), "--no-ray", "--keeps", "0.2"]
    models = ["--models", "tiny,instructseg-tiny", "--methods", "evtp,visionzip,fastv:layer=1"]
    assert sweep.main([*flags, *models]) == 0
    report = json.loads((out / "_report" / "sweep.json").read_text())
    rows = [(r["model"], r["method"], r["keep"], r["k"]) for r in report["rows"]]
    methods = [("none", 1.0, 729), ("evtp", 0.2, 146), ("visionzip", 0.2, 146), ("fastv:layer=1", 0.2, 146)]
    assert rows == [(model, *m) for model in ("tiny", "instructseg-tiny") for m in methods]
    for r in report["rows"]:
        assert r["errors"] == 0 and r["accuracy"] is not None and r["metric"] == "J&F"
        assert (r["grid_radius"] == 0) == (r["method"] == "none")  # coverage is reported for every method
    assert (out / "_report" / "sweep.png").stat().st_size > 1000
    assert "instructseg-tiny  fastv:layer=1" in capsys.readouterr().out
    # Each configuration is its own run folder, so each resumes on its own.
    assert (out / "instructseg-tiny" / "fastv-layer1-0.2" / "_config.json").is_file()


def test_eval_revos_runs_instructseg_with_pruned_references(tmp_path):
    out = tmp_path / "instructseg"
    flags = ["--output", str(out), "--no-ray", "--preset", "instructseg-tiny", "--prune-references"]
    assert eval_revos.main(flags) == 0
    config = json.loads((out / "_config.json").read_text())
    assert config["model"]["preset"] == "instructseg-tiny" and config["pruning"]["references"] is True
    predictions, tokens = load(str(out), "predictions"), load(str(out), "tokens")
    assert len(predictions) > 0 and len(load(str(out), "errors")) == 0 and set(tokens.k) == {146}


def test_pruning_references_is_refused_for_hyperseg(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        eval_revos.main(["--output", str(tmp_path / "h"), "--no-ray", "--prune-references"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and line.endswith("--prune-references applies to InstructSeg only; --checkpoint "
                                                       f"{SHIPPED_CHECKPOINT} is a HyperSeg model")  # fmt: skip
    assert not (tmp_path / "h" / "predictions").exists()
