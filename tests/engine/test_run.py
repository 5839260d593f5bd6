"""The engine end to end on the tiny preset: exactly-once rows, metrics from the Parquet masks, resume by shard."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import ClusterConfig, DataConfig, ModelConfig, OutputConfig, RunConfig
from pipeline.data import read_samples, shard_urls, write_shards
from pipeline.data.fixtures.revos import write_revos
from pipeline.data.layouts import FORMATS
from pipeline.engine.run import run
from pipeline.engine.scoring import expression_metrics
from pipeline.engine.sink import Sink, shard_id
from pipeline.model import PruningConfig
from pipeline.results import decode_mask, load


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("revos")
    write_revos(root)
    write_shards(FORMATS["revos"](root, split="valid"), str(root / "shards"), max_samples=1)
    return str(root / "shards" / "manifest.json")


def config(shards, out, actors=2):
    return RunConfig(
        data=DataConfig(shards),
        output=OutputConfig(str(out)),
        model=ModelConfig(preset="tiny"),
        pruning=PruningConfig("evtp", 0.2),
        cluster=ClusterConfig(actors=actors),
    )


def expected_rows(shards):
    samples = list(read_samples(shards))
    return {(s.key, e.id, t) for s in samples for e in s.expressions for t in range(len(s.frames()))}, samples


def test_ray_run_writes_every_row_once_and_resumes_by_shard(ray_session, shards, tmp_path):
    out = tmp_path / "run"
    summary = run(config(shards, out))
    expected, samples = expected_rows(shards)
    predictions = load(str(out), "predictions")
    keys = list(zip(predictions.sample_key, predictions.expression_id, predictions.frame_index, strict=True))
    assert len(keys) == len(set(keys)) and set(keys) == expected
    assert summary.shards_done == summary.shards_total == 2 and summary.errors == 0
    assert (predictions.k == 146).all()
    # Ray gives each actor OMP_NUM_THREADS=1; the worker takes its share of the 4 CPUs instead (2 actors).
    assert [a["torch_threads"] for a in Sink(str(out)).attempts()] == [2, 2]
    tokens = load(str(out), "tokens")
    assert len(tokens) == sum(len(s.frames()) for s in samples) and all(len(k) == 146 for k in tokens.kept)
    # The metrics table equals metrics recomputed from the Parquet masks and the shards' ground truth.
    metrics = load(str(out), "metrics")
    by_sample = {s.key: s for s in samples}
    for row in metrics.itertuples():
        sample = by_sample[row.sample_key]
        expression = next(e for e in sample.expressions if e.id == row.expression_id)
        rows = predictions[
            (predictions.sample_key == row.sample_key) & (predictions.expression_id == row.expression_id)
        ]
        masks = [decode_mask(r) for _, r in rows.sort_values("frame_index").iterrows()]
        again = expression_metrics(sample, expression, masks)
        assert again["convention"] == row.convention == "revos"
        for name in ("j", "f", "a", "r"):
            assert again[name] == pytest.approx(getattr(row, name))
        assert (again["intersection"], again["union"]) == (row.intersection, row.union)
    assert len(metrics) == sum(len(s.expressions) for s in samples)
    # pandas reads each table folder directly: no partial or hidden file gets in the way.
    assert len(pd.read_parquet(out / "predictions")) == len(predictions)

    # Delete one shard's outputs and marker: a re-run of the same command redoes only that shard.
    sink = Sink(str(out))
    first = sorted(sink.done())[0]
    kept_before = pd.read_parquet(out / "predictions" / f"{sorted(sink.done())[1]}.parquet")
    sink.forget(first)
    again = run(config(shards, out))
    assert (again.shards_skipped, again.shards_done) == (1, 1)
    after = load(str(out), "predictions")
    keys_after = list(zip(after.sample_key, after.expression_id, after.frame_index, strict=True))
    assert len(keys_after) == len(set(keys_after)) and set(keys_after) == expected
    second = sorted(Sink(str(out)).done())[1]
    pd.testing.assert_frame_equal(pd.read_parquet(out / "predictions" / f"{second}.parquet"), kept_before)
    runs = load(str(out), "runs")
    assert len(runs) == 2 and sorted(runs.shards_done) == [1, 2]
    # And a third run finds nothing to do.
    assert run(config(shards, out)).shards_done == 0


def test_bare_loop_gives_the_same_rows(shards, tmp_path):
    run(config(shards, tmp_path / "here", actors=1), use_ray=False)
    predictions = load(str(tmp_path / "here"), "predictions")
    expected, _ = expected_rows(shards)
    assert (
        set(zip(predictions.sample_key, predictions.expression_id, predictions.frame_index, strict=True)) == expected
    )
    assert np.isfinite(predictions.score).all()
    assert shard_id("s3://b/x/revos-valid-00000.tar") != shard_id("s3://b/y/revos-valid-00000.tar")


def test_another_configuration_is_refused_unless_overwrite(shards, tmp_path):
    out = tmp_path / "run"
    first = config(shards, out, actors=1)
    run(first, use_ray=False)
    other = dataclasses.replace(first, pruning=PruningConfig("grid", 0.1))
    with pytest.raises(ValueError, match="another configuration \\(differs in pruning\\)"):
        run(other, use_ray=False)
    assert set(load(str(out), "predictions").method) == {"evtp"}  # nothing was touched
    # Running wider (more actors) is the same configuration: it resumes.
    assert run(dataclasses.replace(first, cluster=ClusterConfig(actors=2)), use_ray=False).shards_done == 0
    summary = run(other, use_ray=False, overwrite=True)
    assert summary.shards_done == 2
    predictions = load(str(out), "predictions")
    assert set(predictions.method) == {"grid"} and (predictions.k == 73).all()
    assert len(load(str(out), "runs")) == 1  # the earlier run's rows went with it


def test_a_folder_from_before_a_field_existed_resumes_when_the_field_is_at_its_default(shards, tmp_path):
    out = tmp_path / "run"
    first = config(shards, out, actors=1)
    run(first, use_ray=False)
    saved = json.loads((out / "_config.json").read_text())
    del saved["pruning"]["references"]  # as written before PruningConfig.references existed
    (out / "_config.json").write_text(json.dumps(saved))
    assert run(first, use_ray=False).shards_done == 0  # the same run: it resumes
    with pytest.raises(ValueError, match="differs in pruning"):
        run(dataclasses.replace(first, pruning=dataclasses.replace(first.pruning, references=True)), use_ray=False)


def test_a_shard_is_computed_once_per_commit_and_given_up_after_max_attempts(shards, tmp_path):
    """A retried task whose shard is already committed returns the marker; attempts that all died stop."""
    from pipeline.engine.worker import ShardProcessor

    url = shard_urls(shards)[0]
    processor = ShardProcessor(config(shards, tmp_path / "a"), "run-1")
    stats = processor.process(url)
    file = tmp_path / "a" / "predictions" / f"{shard_id(url)}.parquet"
    written = file.stat().st_mtime_ns
    assert processor.process(url) == stats and file.stat().st_mtime_ns == written
    assert len(Sink(str(tmp_path / "a")).attempts()) == 1

    limited = dataclasses.replace(config(shards, tmp_path / "b"), cluster=ClusterConfig(max_attempts=2))
    sink = Sink(str(tmp_path / "b"))
    sink.begin(shard_id(url), "run-2")
    sink.begin(shard_id(url), "run-2")  # two attempts that died
    given_up = ShardProcessor(limited, "run-2", predictor=processor.predictor).process(url)
    assert given_up["failed"] == 1 and sink.done() == set() and not (tmp_path / "b" / "predictions").exists()
    # Another run starts counting afresh.
    assert ShardProcessor(limited, "run-3", predictor=processor.predictor).process(url)["failed"] == 0


def test_sharing_the_visual_prefix_changes_no_row_and_resumes_the_same_folder(shards, tmp_path):
    shared = config(shards, tmp_path / "shared")
    unshared = dataclasses.replace(shared, model=dataclasses.replace(shared.model, share_prefix=False))
    run(shared, use_ray=False)
    assert run(unshared, use_ray=False).shards_skipped == 2  # not refused: the same rows, computed another way
    run(dataclasses.replace(unshared, output=OutputConfig(str(tmp_path / "unshared"))), use_ray=False)
    order = ["sample_key", "expression_id", "frame_index"]
    a, b = (load(str(tmp_path / name), "predictions").sort_values(order) for name in ("shared", "unshared"))
    assert (a["query"].to_numpy() == b["query"].to_numpy()).all()
    np.testing.assert_allclose(a.score.to_numpy(), b.score.to_numpy(), atol=1e-5)
    assert (a.mask_counts.to_numpy() == b.mask_counts.to_numpy()).all()


@pytest.fixture(scope="module")
def image_shards(tmp_path_factory):
    """7 images with ground truth in one shard: batches of 3, 3 and 1."""
    from tests.samples import image_sample

    root = tmp_path_factory.mktemp("images")
    write_shards([image_sample(i) for i in range(7)], str(root))
    return str(root / "manifest.json")


def test_image_batches_give_the_rows_of_one_image_at_a_time(image_shards, tmp_path, monkeypatch):
    from pipeline.model import HyperSegPredictor

    segment, sizes = HyperSegPredictor.segment, []

    def recorded(self, encoded, expressions, *args, refuse_batches=False, **kwargs):
        sizes.append(len(expressions))
        if refuse_batches and len(expressions) > 1:
            raise RuntimeError("out of memory")
        return segment(self, encoded, expressions, *args, **kwargs)

    monkeypatch.setattr(HyperSegPredictor, "segment", recorded)
    base = config(image_shards, tmp_path / "one")
    alone = dataclasses.replace(base, cluster=ClusterConfig(image_batch=1))
    batched = dataclasses.replace(
        base, output=OutputConfig(str(tmp_path / "batched")), cluster=ClusterConfig(image_batch=3)
    )
    assert run(alone, use_ray=False).processed == 7 and sizes == [1] * 7
    sizes.clear()
    assert run(batched, use_ray=False).processed == 7 and sizes == [3, 3, 1]
    order = ["sample_key", "expression_id"]
    a, b = (load(str(tmp_path / n), "predictions").sort_values(order) for n in ("one", "batched"))
    assert list(a.sample_key) == list(b.sample_key) and (a["query"].to_numpy() == b["query"].to_numpy()).all()
    np.testing.assert_allclose(a.score.to_numpy(), b.score.to_numpy(), atol=1e-5)
    assert (a.mask_counts.to_numpy() == b.mask_counts.to_numpy()).all()
    # A batch whose call fails is redone image by image, so an error would land on its own sample.
    monkeypatch.setattr(HyperSegPredictor, "segment", lambda *a, **k: recorded(*a, refuse_batches=True, **k))
    sizes.clear()
    fallback = dataclasses.replace(batched, output=OutputConfig(str(tmp_path / "fallback")))
    assert run(fallback, use_ray=False).errors == 0 and sizes == [3, 1, 1, 1, 3, 1, 1, 1, 1]
    c = load(str(tmp_path / "fallback"), "predictions").sort_values(order)
    np.testing.assert_allclose(a.score.to_numpy(), c.score.to_numpy(), atol=1e-5)


def test_a_ray_driver_does_not_import_the_model():
    """The job's driver hands ShardWorker to Ray Data without importing transformers (seconds on 2 cores)."""
    import subprocess
    import sys

    code = (
        "import sys; sys.path.insert(0, 'jobs'); import pseudo_label; from pipeline.engine.run import _run_ray; "
        "import pipeline.engine.actor; print('transformers' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert result.stdout.strip() == "False"


def test_pending_shards_run_longest_first_when_the_manifest_counts_them():
    from pipeline.engine.run import longest_first

    entries = {
        "a": {"frames": 1, "expression_frames": 2},
        "b": {"frames": 200, "expression_frames": 800},
        "c": {"frames": 10, "expression_frames": 10},
        "d": {"frames": 10, "expression_frames": 10},
    }
    assert longest_first(list(entries), entries) == ["b", "c", "d", "a"]  # ties keep their input order
    assert longest_first(["a", "b", "x"], {**entries, "x": {"keys": []}}) == ["a", "b", "x"]  # an old manifest
