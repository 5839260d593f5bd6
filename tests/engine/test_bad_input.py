"""A corpus of bad input, one case per shard among good shards: one clear errors row per bad case, the rest whole.

Inputs = processed + errors, by count, against the manifest's keys; every good shard's rows are complete.
"""

import copy
import hashlib
import io
import json

import av
import numpy as np
import pytest

from pipeline.config import ClusterConfig, DataConfig, ModelConfig, OutputConfig, RunConfig
from pipeline.data import Expression, ShardSample, build_meta, make_key, rle
from pipeline.engine.run import run
from pipeline.model import PruningConfig
from pipeline.results import load
from tests.samples import bomb_png, image_sample, members_of, raw_tar


def zero_frame_mp4() -> bytes:
    """An mp4 with a video track and no frame in it: a header and nothing else."""
    buffer = io.BytesIO()
    container = av.open(buffer, "w", format="mp4")
    stream = container.add_stream("libx264", rate=5)
    stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
    container.start_encoding()
    container.close()
    return buffer.getvalue()


def mp4_sample(name: str) -> ShardSample:
    key = make_key("synthetic", "val", name)
    meta = build_meta(
        key=key,
        media={"type": "video", "member": "mp4", "fps": 5},
        size=(32, 32),
        expressions=[Expression("0", "the moving square", "referring", ())],
        gt=None,
        source={"dataset": "synthetic", "split": "val", "original_id": name},
    )
    return ShardSample(key, meta, {"mp4": zero_frame_mp4()})


def with_meta(sample: ShardSample, change) -> dict:
    """The sample's raw members with its metadata changed by ``change(meta)`` (bypassing validation)."""
    meta = copy.deepcopy(sample.meta)
    change(meta)
    return members_of(sample) | {f"{sample.key}.json": json.dumps(meta, ensure_ascii=False).encode()}


def set_text(text: str):
    def change(meta):
        meta["expressions"][0]["text"] = text

    return change


def set_texts(texts: list[str]):
    def change(meta):
        for expression, text in zip(meta["expressions"], texts, strict=True):
            expression["text"] = text

    return change


def truncated(samples: list[ShardSample]) -> bytes:
    """The samples' tar cut 100 bytes into the last sample's image."""
    buffer = io.BytesIO()
    raw_tar(buffer, [members_of(s) for s in samples])
    full = buffer.getvalue()
    return full[: full.index(f"{samples[-1].key}.jpg".encode()) + 512 + 100]


def bomb() -> ShardSample:
    sample = image_sample(5, member="png")
    sample.meta["size"], sample.meta["gt"] = [9000, 9000], None
    sample.members["png"] = bomb_png()
    return sample


def rle_mismatch() -> dict:
    sample = image_sample(7)
    return with_meta(sample, lambda m: m["gt"]["objects"].update(obj=[rle.encode(np.ones((5, 5), bool))]))


def no_frames() -> dict:
    sample = image_sample(16)

    def change(meta):
        meta["media"] = {"type": "frames", "members": [], "frame_names": []}

    return with_meta(sample, change)


NON_ASCII = ["der Hund links — größer", "左边的狗"]
GOOD = {"good-a": [0, 1], "good-b": [13, 14]}
# shard name -> (its samples' raw members (or the raw tar bytes), keys in it, the expected errors (key, stage)).
CASES = {
    "good-a": ([members_of(image_sample(i)) for i in GOOD["good-a"]], []),
    "truncated": (truncated([image_sample(2), image_sample(3)]), [(image_sample(3).key, "tar")]),
    "not-an-image": ([members_of(image_sample(4), jpg=b"GIF89a but not really")], [(image_sample(4).key, "image")]),
    "bomb": ([members_of(bomb())], [(bomb().key, "image")]),
    "wrong-types": (
        [with_meta(image_sample(6), lambda m: m.update(size="24x32"))],
        [(image_sample(6).key, "metadata")],
    ),
    "missing-field": ([with_meta(image_sample(8), lambda m: m.pop("source"))], [(image_sample(8).key, "metadata")]),
    "rle-size": ([rle_mismatch()], [(image_sample(7).key, "metadata")]),
    "zero-frame-mp4": ([members_of(mp4_sample("empty.mp4"))], [(mp4_sample("empty.mp4").key, "decode")]),
    "no-frames": ([no_frames()], [(image_sample(16).key, "metadata")]),
    "empty-expression": ([with_meta(image_sample(9), set_text(""))], [(image_sample(9).key, "metadata")]),
    "blank-expression": ([with_meta(image_sample(10), set_text(" \t "))], [(image_sample(10).key, "metadata")]),
    "non-ascii": (
        [with_meta(image_sample(11), set_texts(NON_ASCII))],
        [],
    ),
    "pickle-member": ([members_of(image_sample(12), pkl=b"cos\nsystem\n")], [(image_sample(12).key, "member")]),
    "repeated-key": ([members_of(image_sample(0)), members_of(image_sample(15))], [(image_sample(0).key, "key")]),
    "good-b": ([members_of(image_sample(i)) for i in GOOD["good-b"]], []),
}


def keys_in(members: list[dict] | bytes, name: str) -> list[str]:
    if isinstance(members, bytes):  # the truncated case: the keys it was written with
        return [image_sample(2).key, image_sample(3).key]
    return [next(iter(m)).rsplit(".", 1)[0] for m in members]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The shards and a manifest (with keys, as ``write_shards`` writes it) over them, good and bad in order."""
    root = tmp_path_factory.mktemp("corpus")
    entries = []
    for i, (name, (members, _)) in enumerate(CASES.items()):
        path = root / f"shard-{i:05d}.tar"
        if isinstance(members, bytes):
            path.write_bytes(members)
        else:
            raw_tar(path, members)
        data = path.read_bytes()
        keys = keys_in(members, name)
        entries.append(
            {"uri": path.name, "samples": len(keys), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            | {"keys": keys}
        )
    manifest = {"format": "evtp-ivs-shards", "schema_version": 1, "samples": sum(e["samples"] for e in entries)}
    (root / "manifest.json").write_text(json.dumps(manifest | {"shards": entries}))
    return root


@pytest.fixture(scope="module")
def result(ray_session, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    config = RunConfig(
        data=DataConfig(str(corpus / "manifest.json")),
        output=OutputConfig(str(out)),
        model=ModelConfig(preset="tiny"),
        pruning=PruningConfig("evtp", 0.2),
        cluster=ClusterConfig(actors=2),
    )
    summary = run(config)
    return summary, {t: load(str(out), t) for t in ("predictions", "metrics", "errors", "tokens")}


def shard_of(name: str, corpus) -> str:
    return str(corpus / f"shard-{list(CASES).index(name):05d}.tar")


def test_each_bad_case_is_one_clear_errors_row(result, corpus):
    summary, tables = result
    errors = tables["errors"]
    for name, (_, expected) in CASES.items():
        rows = errors[errors.shard == shard_of(name, corpus)]
        assert sorted(zip(rows.sample_key, rows.stage, strict=True)) == sorted(expected), name
        assert rows.message.str.len().gt(10).all() and rows.error_type.notna().all(), name
    messages = dict(zip(errors.stage + ":" + errors.sample_key, errors.message, strict=True))
    assert "over the" in messages[f"image:{bomb().key}"]
    assert "pickle" in messages[f"member:{image_sample(12).key}"]
    assert "RLE size" in messages[f"metadata:{image_sample(7).key}"]
    assert "expressions/0/text" in messages[f"metadata:{image_sample(9).key}"]
    assert "truncated or corrupt tar after 1 samples" in messages[f"tar:{image_sample(3).key}"]
    assert shard_of("good-a", corpus) in messages[f"key:{image_sample(0).key}"]
    assert "video" in messages[f"decode:{mp4_sample('empty.mp4').key}"]
    assert summary.errors == len(errors) == sum(len(e) for _, e in CASES.values())


def test_inputs_equal_processed_plus_errors(result, corpus):
    summary, tables = result
    manifest = json.loads((corpus / "manifest.json").read_text())
    inputs = sum(len(e["keys"]) for e in manifest["shards"])
    processed = tables["tokens"].groupby(["shard", "sample_key"]).ngroups  # every processed sample has tokens
    assert processed == summary.processed
    assert inputs == processed + len(tables["errors"]) == summary.processed + summary.errors
    assert summary.shards_done == len(CASES) and summary.retries == 0


def test_good_shards_and_valid_cases_are_complete(result, corpus):
    _, tables = result
    predictions = tables["predictions"]
    expect = {name: GOOD[name] for name in GOOD} | {"non-ascii": [11], "repeated-key": [15], "truncated": [2]}
    for name, indices in expect.items():
        rows = predictions[predictions.shard == shard_of(name, corpus)]
        wanted = {(image_sample(i).key, e["id"]) for i in indices for e in image_sample(i).meta["expressions"]}
        got = list(zip(rows.sample_key, rows.expression_id, strict=True))
        assert len(got) == len(set(got)) and set(got) == wanted, name
    metrics = tables["metrics"]
    assert set(metrics.sample_key[metrics.shard == shard_of("non-ascii", corpus)]) == {image_sample(11).key}
    # The repeated key's first copy (in good-a) is the only one anywhere.
    assert set(predictions.shard[predictions.sample_key == image_sample(0).key]) == {shard_of("good-a", corpus)}
