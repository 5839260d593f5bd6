"""ReVOS and MeViS converters: fixture -> samples -> shards -> read back, faithfully; bad layouts fail loudly."""

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.data import ShardSample, make_key, read_samples, write_shards
from pipeline.data.fixtures.refytvos import mismatches
from pipeline.data.fixtures.revos import REVOS_VIDEO_WITH_SLASHES, write_mevis, write_revos
from pipeline.data.layouts import revos
from pipeline.data.reader import Sample


def _round_trip(samples, out: Path) -> list[Sample]:
    write_shards(samples, str(out), prefix="t")
    read = list(read_samples(str(out / "manifest.json")))
    assert all(isinstance(s, Sample) for s in read), read
    return read


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _meta(root: Path, split: str = "valid") -> Path:
    return root / f"meta_expressions_{split}_.json"


@pytest.mark.parametrize("split", ["valid", "train"])
def test_revos_round_trip(tmp_path, split):
    expected = write_revos(tmp_path / "ReVOS", split=split)
    samples = _round_trip(revos.convert(expected.root, split=split), tmp_path / "out")
    assert mismatches(samples, expected) == []
    slashed = samples[0]
    assert slashed.meta["source"]["original_id"] == REVOS_VIDEO_WITH_SLASHES
    assert slashed.key == make_key(REVOS_VIDEO_WITH_SLASHES)
    assert [e.kind for e in slashed.expressions] == ["referring", "reasoning", "no-target"]
    assert slashed.expressions[1].object_ids == ("11", "12")
    assert slashed.mask("12", 1) is None  # absent from frame 1: null, not an empty mask
    assert not slashed.target(slashed.expressions[2], 0).any()
    assert "99" not in slashed.meta["gt"]["objects"]  # in mask_dict.json, named by no expression


def test_revos_rles_are_copied_unchanged(tmp_path):
    expected = write_revos(tmp_path / "ReVOS")
    mask_dict = json.loads((expected.root / "mask_dict.json").read_text())
    for sample in revos.convert(expected.root, split="valid"):
        for anno_id, rles in sample.meta["gt"]["objects"].items():
            assert rles == mask_dict[anno_id]


def test_revos_uncompressed_rle_is_reencoded(tmp_path):
    expected = write_revos(tmp_path / "ReVOS")
    mask = expected.videos[1].masks["21"][0]
    flat = mask.flatten(order="F").astype(int)  # COCO runs are over the column-major flattening, zeros first
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [2]])) != 0)
    runs = np.diff(np.concatenate([[0], edges])).tolist()
    runs = runs if flat[0] == 0 else [0, *runs]
    assert sum(runs) == mask.size

    def uncompress(data):
        data["21"][0] = {"size": list(mask.shape), "counts": runs}

    _edit(expected.root / "mask_dict.json", uncompress)
    samples = _round_trip(revos.convert(expected.root, split="valid"), tmp_path / "out")
    assert mismatches(samples, expected) == []
    assert isinstance(samples[1].meta["gt"]["objects"]["21"][0]["counts"], str)


def test_revos_is_reproducible(tmp_path):
    expected = write_revos(tmp_path / "ReVOS")
    manifests = []
    for run in ("a", "b"):
        write_shards(revos.convert(expected.root, split="valid"), str(tmp_path / run), prefix="revos")
        manifests.append(json.loads((tmp_path / run / "manifest.json").read_text()))
    assert manifests[0]["shards"] == manifests[1]["shards"]
    assert manifests[0]["samples"] == 2


@pytest.mark.parametrize("split", ["train", "valid_u"])
def test_mevis_round_trip(tmp_path, split):
    expected = write_mevis(tmp_path / "mevis", split=split)
    samples = _round_trip(revos.convert_mevis(expected.root, split=split), tmp_path / "out")
    assert mismatches(samples, expected) == []
    first = samples[0]
    assert [e.kind for e in first.expressions] == ["referring", "referring", "no-target"]
    assert first.expressions[1].object_ids == ("0", "1")
    assert first.mask("1", 1) is None
    assert samples[1].frame_names == ["00020", "00010", "00030"]  # the meta's order, not sorted


def test_mevis_valid_has_no_ground_truth(tmp_path):
    expected = write_mevis(tmp_path / "mevis", split="valid")
    samples = _round_trip(revos.convert_mevis(expected.root, split="valid"), tmp_path / "out")
    assert mismatches(samples, expected) == []
    assert all(s.meta["gt"] is None for s in samples)
    assert all(e.object_ids == () and e.kind == "referring" for s in samples for e in s.expressions)


def test_both_entries_and_flavour_agree(tmp_path):
    expected = write_mevis(tmp_path / "mevis", split="valid_u")
    via_flavour = [s.meta for s in revos.convert(expected.root, split="valid_u", flavour="mevis")]
    assert [s.meta for s in revos.CONVERTERS["mevis"](expected.root, split="valid_u")] == via_flavour
    assert revos.CONVERTERS["revos"] is revos.convert and revos.FORMAT == "revos"
    assert all(isinstance(s, ShardSample) for s in revos.convert_mevis(expected.root, split="valid_u"))


def _set_expression(video: str, exp_id: str, **fields):
    def change(data):
        data["videos"][video]["expressions"][exp_id].update(fields)

    return change


REVOS_BREAKAGES = {
    "anno missing from mask_dict": (
        "mask_dict.json",
        lambda d: d.pop("12"),
        "mask_dict.json: no masks for anno_id 12",
    ),
    "wrong mask count": ("mask_dict.json", lambda d: d["21"].pop(), "has 2 masks for 3 frames"),
    "rle size": ("mask_dict.json", lambda d: d["21"][0].update(size=[5, 5]), "differs from the frame size"),
    "short counts": ("mask_dict.json", lambda d: d["11"][0].update(counts="0"), "do not cover 24x32"),
    "cut counts": ("mask_dict.json", lambda d: d["11"][0].update(counts="P"), "ends inside a run"),
    "bad counts char": ("mask_dict.json", lambda d: d["11"][0].update(counts="\x7f"), "out of range"),
    "counts type": ("mask_dict.json", lambda d: d["11"][0].update(counts=3), "counts of type int"),
    "type 2 with objects": (
        "meta",
        _set_expression(REVOS_VIDEO_WITH_SLASHES, "2", anno_id=[11], obj_id=[0]),
        "type_id 2",
    ),
    "unknown type": ("meta", _set_expression("c1a2b3d4e5", "0", type_id=5), "type_id must be one of"),
    "anno/obj lengths": ("meta", _set_expression("c1a2b3d4e5", "0", obj_id=[1, 2]), "1 anno_id for 2 obj_id"),
    "no text": ("meta", _set_expression("c1a2b3d4e5", "0", exp=None), "'exp' string"),
    "meta size": (
        "meta",
        lambda d: d["videos"]["c1a2b3d4e5"].update(height=21),
        r"frame is 20x28, expected 21x28 \(meta_expressions_valid_\.json height/width\)",
    ),
    "no frames": ("meta", lambda d: d["videos"]["c1a2b3d4e5"].update(frames=[]), "non-empty 'frames'"),
    "no videos": ("meta", lambda d: d.pop("videos"), "expected {'videos'"),
}


@pytest.mark.parametrize("name", sorted(REVOS_BREAKAGES))
def test_revos_malformed_input_raises(tmp_path, name):
    expected = write_revos(tmp_path / "ReVOS")
    target, change, message = REVOS_BREAKAGES[name]
    path = _meta(expected.root) if target == "meta" else expected.root / target
    _edit(path, change)
    with pytest.raises(ValueError, match=message) as error:
        list(revos.convert(expected.root, split="valid"))
    assert str(path.name) in str(error.value)


def test_revos_missing_files_raise(tmp_path):
    expected = write_revos(tmp_path / "ReVOS")
    with pytest.raises(ValueError, match=r"meta_expressions_test_\.json: missing"):
        list(revos.convert(expected.root, split="test"))
    (expected.root / "mask_dict.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"mask_dict\.json: not valid JSON"):
        list(revos.convert(expected.root, split="valid"))
    expected = write_revos(tmp_path / "ReVOS2")
    expected.videos[1].frame_paths[2].unlink()
    with pytest.raises(ValueError, match=r"00030\.jpg: missing frame"):
        list(revos.convert(expected.root, split="valid"))
    expected.videos[1].frame_paths[1].write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"00010\.jpg: unreadable frame"):
        list(revos.convert(expected.root, split="valid"))


def test_mevis_malformed_input_raises(tmp_path):
    expected = write_mevis(tmp_path / "mevis", split="train")
    (expected.root / "train" / "mask_dict.json").unlink()
    with pytest.raises(ValueError, match=r"train/mask_dict\.json: missing"):
        list(revos.convert_mevis(expected.root, split="train"))
    expected = write_mevis(tmp_path / "mevis2", split="valid_u")
    _edit(expected.root / "valid_u" / "meta_expressions.json", _set_expression("8d2e4c6a0f", "0", anno_id="2"))
    with pytest.raises(ValueError, match=r"meta_expressions\.json video '8d2e4c6a0f' expression '0': anno_id must"):
        list(revos.convert_mevis(expected.root, split="valid_u"))
    with pytest.raises(ValueError, match="unknown flavour"):
        list(revos.convert(expected.root, split="valid_u", flavour="ytvos"))


def test_revos_rle_check_can_be_skipped(tmp_path):
    expected = write_revos(tmp_path / "ReVOS")
    _edit(expected.root / "mask_dict.json", lambda d: d["11"][0].update(counts="0"))
    samples = list(revos.convert(expected.root, split="valid", check_rles=False))
    assert samples[0].meta["gt"]["objects"]["11"][0]["counts"] == "0"  # passed through unverified
