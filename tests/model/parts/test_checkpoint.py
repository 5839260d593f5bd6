"""Loading released checkpoints: every HyperSeg-3B key maps, shards round-trip, bad folders are refused clearly."""

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from pipeline.model import HyperSeg, HyperSegPredictor, config_from_checkpoint, preset
from pipeline.model.hyperseg.model import DROPPED_PREFIXES
from pipeline.model.parts.checkpoint import CheckpointError, map_weights, parameters_on_meta, write_released_layout
from tests.samples import payload

from ..reference import GOLDEN, REFERENCE

CHECKPOINT = GOLDEN / "checkpoint"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "int64": torch.int64}


def released_meta_weights(listing: str = "hyperseg-3b.state_dict.tsv") -> dict[str, torch.Tensor]:
    """Every key of a released state dict (HyperSeg-3B's by default) as a meta tensor of its shape and dtype."""
    weights = {}
    for line in (REFERENCE / listing).read_text().splitlines()[1:]:
        key, shape, dtype = line.split("\t")
        dims = [int(d) for d in shape.split("x")] if shape else []
        weights[key] = torch.empty(dims, dtype=DTYPES[dtype], device="meta")
    return weights


def test_hyperseg_3b_maps_every_released_key():
    weights = released_meta_weights()
    assert len(weights) == 1636
    with parameters_on_meta():
        model = HyperSeg(preset("hyperseg-3b"))
    state, unclaimed = map_weights(weights, model.routes(), DROPPED_PREFIXES)
    assert unclaimed == []
    model.load_released(weights)  # raises on any missing key, unexpected key or shape mismatch
    loaded = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in state.items()} == loaded
    # 3.34 B released parameters; what is never run is dropped by name, not by accident.
    released = sum(t.numel() for t in weights.values())
    assert 3.3e9 < released < 3.4e9
    dropped = [k for k in weights if k.startswith(DROPPED_PREFIXES)]
    assert {k.split(".")[0] for k in dropped} == {"lm_head", "region_projector", "class_name_projector"}


def test_golden_config_is_the_tiny_preset():
    assert config_from_checkpoint(CHECKPOINT) == preset("tiny")


def copy_without_weights(target):
    target.mkdir()
    for path in CHECKPOINT.iterdir():
        if not path.name.endswith(".safetensors"):
            shutil.copy(path, target / path.name)
    return target


def test_sharded_checkpoint_round_trips_to_identical_outputs(tmp_path):
    sharded = copy_without_weights(tmp_path / "sharded")
    shards = write_released_layout(load_file(CHECKPOINT / "model.safetensors"), sharded, max_shard_bytes=8_000_000)
    assert len(shards) >= 2 and (sharded / "model.safetensors.index.json").is_file()
    image = np.asarray(Image.open(GOLDEN / "reference" / "image.png").convert("RGB"))
    one = HyperSegPredictor.from_pretrained(CHECKPOINT).predict(image, ["the red box on the left"])[0]
    two = HyperSegPredictor.from_pretrained(sharded).predict(image, ["the red box on the left"])[0]
    assert (one.query, one.score) == (two.query, two.score)
    assert np.array_equal(one.mask, two.mask)
    a, b = HyperSeg.from_pretrained(CHECKPOINT).state_dict(), HyperSeg.from_pretrained(sharded).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_loads_in_another_dtype():
    model = HyperSeg.from_pretrained(CHECKPOINT, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_missing_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        HyperSeg.from_pretrained(tmp_path)
    folder = copy_without_weights(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="no model.safetensors or model.safetensors.index.json"):
        HyperSeg.from_pretrained(folder)
    write_released_layout(load_file(CHECKPOINT / "model.safetensors"), folder, max_shard_bytes=8_000_000)
    (folder / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(CheckpointError, match="shards named in model.safetensors.index.json are missing"):
        HyperSeg.from_pretrained(folder)


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "model.pth", "last.ckpt"])
def test_pickled_weights_are_refused_unopened(tmp_path, name):
    folder = copy_without_weights(tmp_path / "pickled")
    marker = tmp_path / "pwned"
    (folder / name).write_bytes(pickle.dumps(payload("system", marker)))  # torch.load would run it
    with pytest.raises(CheckpointError, match=f"only pickled weights \\['{name}'\\]; safetensors are required"):
        HyperSeg.from_pretrained(folder)
    assert not marker.exists()


def test_remote_code_is_refused(tmp_path):
    folder = copy_without_weights(tmp_path / "remote")
    shutil.copy(CHECKPOINT / "model.safetensors", folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "evil.Model"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="remote code"):
        HyperSeg.from_pretrained(folder)


def test_key_and_shape_errors_are_listed(tmp_path):
    weights = load_file(CHECKPOINT / "model.safetensors")
    weights["seg_query_projector.weight"] = weights["seg_query_projector.weight"][:, :10].contiguous()
    del weights["model.final_layernorm.bias"]
    weights["model.extra.weight"] = torch.zeros(2)
    folder = copy_without_weights(tmp_path / "broken")
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(CheckpointError) as error:
        HyperSeg.from_pretrained(folder)
    message = str(error.value)
    assert "1 missing keys:\n  llm.final_layernorm.bias" in message
    assert "llm.extra.weight" in message  # unexpected
    assert "seg_query_projector.weight: checkpoint (32, 10) vs model (32, 64)" in message
