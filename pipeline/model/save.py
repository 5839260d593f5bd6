"""Saving a model in the released checkpoint layout, so that ``from_pretrained`` loads it like a release.

The inverse of ``checkpoint.py`` / ``config.config_from_checkpoint``: ``config.json`` (model_type ``mipha_phi``,
structured as the released HyperSeg-3B / InstructSeg configs, model.md §2.2), ``model.safetensors`` (or shards with
``model.safetensors.index.json``) under the released key names (``MaskLlm.released_state_dict``), the project's own
``mask_config.json`` and ``siglip_preprocessor_config.json`` (laid out as golden-tiny's), and the tokenizer files.
No pickles. Every file is written under a temporary name beside its final one and renamed into place, weights
first and ``config.json`` last, so a crash never leaves a truncated file under a final name.
"""

import dataclasses
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path

import torch
import transformers
from transformers import PreTrainedTokenizerBase

from .config import MASK_CONFIG, SIGLIP_PREPROCESSOR, MaskLlmConfig, config_from_checkpoint
from .parts.checkpoint import (
    INDEX_FILE,
    SINGLE_FILE,
    save_safetensors,
    sync_file,
    write_atomically,
    write_released_layout,
)
from .parts.mask_llm import MaskLlm
from .parts.swin import FEATURE_NAMES
from .registry import model_for

CONFIG = "config.json"


def save_pretrained(
    model: MaskLlm,
    tokenizer: PreTrainedTokenizerBase,
    directory: str | Path,
    *,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int | None = None,
) -> Path:
    """Write ``model`` and ``tokenizer`` to ``directory`` in the released layout; ``from_pretrained`` reads it back.

    Args:
        model: a ``HyperSeg`` or ``InstructSeg`` (compiled submodules are fine).
        tokenizer: saved with its own ``save_pretrained``.
        directory: created if needed. Weight files of an earlier save there are replaced (each file atomically,
            not the folder as a whole: save to a fresh folder when all-or-nothing matters).
        dtype: cast floating-point weights to this dtype (default: keep the model's).
        max_shard_bytes: write ``model-0000x-of-0000N.safetensors`` shards of at most this size plus the index,
            like the release, instead of one ``model.safetensors``.

    Raises:
        ValueError: the config has a field the written files cannot carry (``config_from_checkpoint`` would read
            back a different config), or the model still has meta tensors. Nothing is written then.
    """
    saved_dtype = dtype or next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    files = released_configs(
        model.config,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        torch_dtype=str(saved_dtype).removeprefix("torch."),
    )
    check_round_trip(model.config, files)  # before the weights are gathered: it is the cheap check
    weights = _weights_to_save(model, dtype)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _write_weights(weights, directory, max_shard_bytes)
    _save_tokenizer(tokenizer, directory)
    for name in (MASK_CONFIG, SIGLIP_PREPROCESSOR, CONFIG):  # config.json last: it makes the folder a checkpoint
        text = json.dumps(files[name], indent=2, sort_keys=name != MASK_CONFIG) + "\n"
        write_atomically(directory / name, lambda temporary, text=text: temporary.write_text(text))
    return directory


def released_configs(
    config: MaskLlmConfig,
    *,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    torch_dtype: str = "float32",
) -> dict[str, dict]:
    """The JSON files that describe ``config``, by name: ``config.json``, ``mask_config.json`` and the SigLIP one.

    Token ids default to the LLM's pad id (HyperSeg-3B: bos = eos = pad = 50256).
    """
    pad = config.llm.pad_token_id
    tokens = {"bos_token_id": _or(bos_token_id, pad), "eos_token_id": _or(eos_token_id, pad)}
    return {
        CONFIG: _config_json(config, torch_dtype=torch_dtype, **tokens),
        MASK_CONFIG: _mask_config_json(config),
        SIGLIP_PREPROCESSOR: _siglip_preprocessor_json(config),
    }


def check_round_trip(config: MaskLlmConfig, files: dict[str, dict]) -> None:
    """Raise ``ValueError`` naming each field that ``config_from_checkpoint`` would not read back from ``files``."""
    with tempfile.TemporaryDirectory() as folder:
        for name, content in files.items():
            (Path(folder) / name).write_text(json.dumps(content))
        saved = config_from_checkpoint(folder)
    if saved != config:
        lost = "; ".join(
            f"{field}: {ours!r} would load as {back!r}" for field, ours, back in _differences(config, saved)
        )
        raise ValueError(f"the checkpoint files cannot carry this config (config_from_checkpoint reads back {lost})")


def _or(value: int | None, default: int) -> int:
    return default if value is None else int(value)


def _differences(ours: object, back: object, prefix: str = "") -> list[tuple[str, object, object]]:
    """``(dotted field, ours, read back)`` of two configs of the same shape, down to the leaves that differ."""
    if type(ours) is not type(back) or not dataclasses.is_dataclass(ours):
        return [(prefix.rstrip(".") or "config", ours, back)] if ours != back else []
    found = []
    for field in dataclasses.fields(ours):
        found += _differences(getattr(ours, field.name), getattr(back, field.name), f"{prefix}{field.name}.")
    return found


def _siglip_name(config: MaskLlmConfig) -> str:
    """A SigLIP tower name: the released code picks the tower class by the substring "siglip" (model.md §2.2)."""
    vision = config.vision
    return f"siglip-{vision.hidden_size}-patch{vision.patch_size}-{vision.image_size}"


def _config_json(config: MaskLlmConfig, *, bos_token_id: int, eos_token_id: int, torch_dtype: str) -> dict:
    """``config.json`` as the release's ``MiphaPhiConfig`` (a ``PhiConfig`` plus the Mipha / HyperSeg fields).

    Dropout values are our model's (none); the PretrainedConfig boilerplate transformers fills in is left out.
    """
    llm, vision = config.llm, config.vision
    return {
        "architectures": [model_for(config).__name__],  # what config.architecture() reads
        "model_type": "mipha_phi",
        "vocab_size": llm.vocab_size,
        "hidden_size": llm.hidden_size,
        "intermediate_size": llm.intermediate_size,
        "num_hidden_layers": llm.num_layers,
        "num_attention_heads": llm.num_heads,
        "num_key_value_heads": llm.num_heads,
        "partial_rotary_factor": llm.partial_rotary_factor,
        "rope_theta": llm.rope_theta,
        "rope_scaling": None,
        "layer_norm_eps": llm.layer_norm_eps,
        "hidden_act": llm.hidden_act,
        "max_position_embeddings": llm.max_position_embeddings,
        "qk_layernorm": False,
        "tie_word_embeddings": False,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": llm.pad_token_id,
        "torch_dtype": torch_dtype,
        "transformers_version": transformers.__version__,
        # Mipha / HyperSeg fields: ``mm_vision_tower`` makes the released code build the Swin branch and
        # ``mask_decode_train`` the mask branch (model.md §2.2); the tower name must contain "siglip".
        "mm_vision_tower": _siglip_name(config),
        "use_mm_proj": True,
        "swin_type": "base",
        "mask_decode_train": True,
        "vision_config": {
            "vision_tower": {
                "model_type": "mipha_vision_model",
                "hidden_size": vision.hidden_size,
                "intermediate_size": vision.intermediate_size,
                "num_hidden_layers": vision.num_layers,
                "num_attention_heads": vision.num_heads,
                "num_channels": 3,
                "image_size": vision.image_size,
                "patch_size": vision.patch_size,
                "hidden_act": vision.hidden_act,
                "layer_norm_eps": vision.layer_norm_eps,
                "attention_dropout": 0.0,
                "mm_vision_select_layer": vision.select_layer,
                "mm_vision_select_feature": "patch",
                "vision_model_name_or_path": _siglip_name(config),
            },
            "mm_projector": {
                "model_type": "mipha_projector",
                "mm_projector_type": "mlp2x_gelu",
                "mm_hidden_size": vision.hidden_size,
                "hidden_size": vision.llm_hidden_size,
            },
        },
    }


def _mask_config_json(config: MaskLlmConfig) -> dict:
    """The resolved Mask2Former settings, laid out as golden-tiny's ``mask_config.json`` (the release's YAML).

    Only the model's own sections: the release's solver, dataset and loss settings describe training runs.
    """
    swin, pixel, decoder, pre = config.swin, config.pixel_decoder, config.decoder, config.preprocess
    return {
        "MODEL": {
            "BACKBONE": {"FREEZE_AT": 0, "NAME": "D2SwinTransformer"},
            "PIXEL_MEAN": list(pre.pixel_mean),
            "PIXEL_STD": list(pre.pixel_std),
            "META_ARCHITECTURE": "MaskFormer",
            "SEM_SEG_HEAD": {
                "NAME": "MaskFormerHead",
                "CONVS_DIM": pixel.convs_dim,
                "MASK_DIM": pixel.mask_dim,
                "NORM": "GN",
                "PIXEL_DECODER_NAME": "MSDeformAttnPixelDecoder",
                "IN_FEATURES": list(FEATURE_NAMES),
                "DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES": list(FEATURE_NAMES[1:]),
                "COMMON_STRIDE": pixel.common_stride,
                "TRANSFORMER_ENC_LAYERS": pixel.encoder_layers,
            },
            "MASK_FORMER": {
                "TRANSFORMER_DECODER_NAME": "MultiScaleMaskedTransformerDecoder",
                "TRANSFORMER_IN_FEATURE": "multi_scale_pixel_decoder",
                # The inference path the model computes: SEG head with SEG_proj, no norm, no score fusion.
                "SEG_NORM": False,
                "SEG_PROJ": decoder.seg_proj,
                "SEG_TASK": "referring",
                "FUSE_SCORE": False,
                "CRITERION_TYPE": "wo_concat",
                "HIDDEN_DIM": decoder.hidden_dim,
                "NUM_OBJECT_QUERIES": decoder.num_queries,
                # One value for both: the release's pixel-decoder encoder takes its heads from here too.
                "NHEADS": decoder.num_heads,
                "DROPOUT": pixel.dropout,
                "DIM_FEEDFORWARD": decoder.dim_feedforward,
                "PRE_NORM": decoder.pre_norm,
                "ENFORCE_INPUT_PROJ": decoder.enforce_input_projection,
                "SIZE_DIVISIBILITY": 32,
                "DEC_LAYERS": decoder.dec_layers,
            },
            "SWIN": {
                "EMBED_DIM": swin.embed_dim,
                "DEPTHS": list(swin.depths),
                "NUM_HEADS": list(swin.num_heads),
                "WINDOW_SIZE": swin.window_size,
                "PATCH_SIZE": swin.patch_size,
                "MLP_RATIO": swin.mlp_ratio,
                "QKV_BIAS": swin.qkv_bias,
                "APE": False,
                "DROP_PATH_RATE": swin.drop_path_rate,
                "PATCH_NORM": True,
                "OUT_FEATURES": list(FEATURE_NAMES),
            },
        },
        "INPUT": {"IMAGE_SIZE": pre.canvas, "FORMAT": "RGB"},
        "VERSION": 2,
    }


def _siglip_preprocessor_json(config: MaskLlmConfig) -> dict:
    """``SiglipImageProcessor``'s config as golden-tiny's: square bicubic resize, rescale by 1/255, normalise."""
    pre = config.preprocess
    return {
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": list(pre.siglip_mean),
        "image_processor_type": "SiglipImageProcessor",
        "image_std": list(pre.siglip_std),
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"height": pre.siglip_size, "width": pre.siglip_size},
    }


def _weights_to_save(model: MaskLlm, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Released-name tensors on the CPU, floats cast to ``dtype``, each with its own storage (safetensors needs it)."""
    weights, seen = {}, set()
    for key, tensor in model.released_state_dict().items():
        if tensor.is_meta:
            raise ValueError(f"{key} is on the meta device: load or initialise the weights before saving")
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensor = tensor.contiguous()
        # Loading may leave parameters as views of one tensor (the split q/k/v of a fused checkpoint tensor).
        if tensor.untyped_storage().data_ptr() in seen:
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        weights[key] = tensor
    return weights


def _write_weights(weights: dict[str, torch.Tensor], directory: Path, max_shard_bytes: int | None) -> None:
    """One file or shards and the index, then remove weight files of an earlier save that the new ones do not use.

    The old files go only after the new ones are complete, so the folder always holds one whole set of weights;
    the index goes with them when saving one file, since a loader prefers an index.
    """
    before = {*directory.glob("model-*-of-*.safetensors"), directory / SINGLE_FILE, directory / INDEX_FILE}
    if max_shard_bytes is None:
        written = {save_safetensors(weights, directory / SINGLE_FILE)}
    else:
        written = {*write_released_layout(weights, directory, max_shard_bytes), directory / INDEX_FILE}
    for stale in sorted(before - written, key=lambda p: p.name != INDEX_FILE):  # the index first
        stale.unlink(missing_ok=True)


def _save_tokenizer(tokenizer: PreTrainedTokenizerBase, directory: Path) -> None:
    """``tokenizer.save_pretrained`` into a hidden folder beside the final files, then each file renamed into place.

    transformers 5 writes only ``tokenizer.json`` and ``tokenizer_config.json``; a byte-level BPE also gets the
    ``vocab.json`` and ``merges.txt`` the released layout has (model.md §2.1), from the backend model itself.
    """
    staging = directory / f".tokenizer-{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        tokenizer.save_pretrained(str(staging))
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None and type(backend.model).__name__ == "BPE":
            backend.model.save(str(staging))
        for path in sorted(staging.iterdir()):
            sync_file(path)
            os.replace(path, directory / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
