"""Reading the released checkpoint layout, and mapping its keys onto our modules (and back).

A released HyperSeg directory holds ``config.json``, ``model.safetensors`` or sharded
``model-0000x-of-0000N.safetensors`` with ``model.safetensors.index.json``, and the tokenizer files
(model.md §2.1). Only safetensors are read: pickled weights (``.bin``, ``.pt``) can run code when
opened, so they are refused, and a config asking for remote code is refused too.
"""

import json
import logging
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

logger = logging.getLogger(__name__)

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

Converter = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Route:
    """Released keys starting with ``prefix`` go, prefix stripped, through ``convert`` into ``target``.

    ``release`` is the inverse of ``convert`` (our keys, ``target`` stripped, back to released names and layouts),
    used when saving; a route without ``convert`` renames only and needs none.
    """

    prefix: str
    target: str
    convert: Converter | None = None
    release: Converter | None = None

    def claims(self, key: str) -> bool:
        """Whether one of our state-dict keys comes from this route.

        A target ending in ``.`` is a module and claims every key under it; otherwise it names one tensor
        (``seg_query``), which must not claim its longer-named neighbours (``seg_query_projector.*``).
        """
        return key == self.target or (self.target.endswith(".") and key.startswith(self.target))


@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Build modules with parameters on the meta device and buffers where they are computed.

    The pattern of accelerate's ``init_empty_weights(include_buffers=False)``: parameters cost no memory
    and no initialisation (they are replaced by the checkpoint's tensors with ``assign=True``), while
    buffers that checkpoints do not store (RoPE frequencies, Swin's relative-position index) are real.
    """
    register = torch.nn.Module.register_parameter

    def register_on_meta(module: torch.nn.Module, name: str, param: torch.nn.Parameter | None) -> None:
        register(module, name, param)
        if param is not None:
            module._parameters[name] = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    torch.nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


class CheckpointError(ValueError):
    """A checkpoint directory or its weights do not fit the model."""


def read_config(directory: str | Path) -> dict:
    """``config.json`` of a checkpoint directory, refusing remote code."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{directory}: no config.json (expected the released HyperSeg layout)")
    config = json.loads(path.read_text())
    if config.get("auto_map") or config.get("trust_remote_code"):
        raise CheckpointError(f"{path}: the config asks for remote code (auto_map); refusing to run it")
    return config


def weight_files(directory: str | Path) -> list[Path]:
    """The safetensors files of a checkpoint, from its index when sharded."""
    directory = Path(directory)
    index = directory / INDEX_FILE
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [n for n in names if not (directory / n).is_file()]
        if missing:
            raise CheckpointError(f"{directory}: shards named in {INDEX_FILE} are missing: {missing}")
        return [directory / n for n in names]
    if (directory / SINGLE_FILE).is_file():
        return [directory / SINGLE_FILE]
    pickled = sorted(p.name for p in directory.glob("*") if p.suffix in PICKLED_SUFFIXES)
    if pickled:
        raise CheckpointError(
            f"{directory}: only pickled weights {pickled}; safetensors are required "
            "(pickles can run code when loaded; convert them with safetensors first)"
        )
    raise CheckpointError(f"{directory}: no {SINGLE_FILE} or {INDEX_FILE}")


def read_weights(directory: str | Path, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint, on CPU, cast to ``dtype`` if given."""
    weights = {}
    for path in weight_files(directory):
        with safe_open(path, framework="pt") as f:
            for key in f.keys():
                tensor = f.get_tensor(key)
                weights[key] = tensor if dtype is None else tensor.to(dtype)
    return weights


def sync_file(path: str | Path) -> None:
    """Flush a written file to disk, so that a rename after it never exposes a file whose data is not there yet."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary path)`` and move the result to ``path`` in one step.

    The temporary file sits in the same directory (so ``os.replace`` is a rename, never a copy) under a hidden
    ``.tmp`` name that no loader picks up; it is flushed to disk before the rename, so a crash leaves either the
    old file or the complete new one under ``path``, never a truncated one.
    """
    path = Path(path)
    # A fresh name rather than mkstemp's file, so that the writer creates it with the usual (umask) permissions.
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        write(temporary)
        sync_file(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path) -> Path:
    """``safetensors`` file written atomically (``write_atomically``), with the ``format: pt`` metadata."""
    return write_atomically(path, lambda temporary: save_file(tensors, temporary, metadata={"format": "pt"}))


def write_released_layout(weights: dict[str, torch.Tensor], directory: str | Path, max_shard_bytes: int) -> list[Path]:
    """Write tensors as sharded ``model-0000x-of-0000N.safetensors`` plus the index, like the release.

    Shards are filled in key order up to ``max_shard_bytes``; each file is written atomically and the index
    last, so it never names a shard that is not complete.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key in sorted(weights):
        nbytes = weights[key].numel() * weights[key].element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = weights[key].contiguous()
        size += nbytes
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    for name, shard in zip(names, shards, strict=True):
        save_safetensors(shard, directory / name)
        weight_map.update(dict.fromkeys(shard, name))
    total = sum(t.numel() * t.element_size() for t in weights.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    write_atomically(directory / INDEX_FILE, lambda temporary: temporary.write_text(json.dumps(index, indent=2)))
    return [directory / n for n in names]


def map_weights(
    weights: dict[str, torch.Tensor], routes: Iterable[Route], dropped: Iterable[str] = ()
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Route released keys through the part converters.

    Args:
        weights: released tensors by released key.
        routes: where each prefix goes; the longest matching prefix wins.
        dropped: released key prefixes that inference never uses (dropped silently).

    Returns:
        Our state dict, and the released keys no route claimed (reported as unexpected).
    """
    routes = sorted(routes, key=lambda r: len(r.prefix), reverse=True)
    dropped = tuple(dropped)
    groups: dict[Route, dict[str, torch.Tensor]] = {r: {} for r in routes}
    unclaimed = []
    for key, value in weights.items():
        if key.startswith(dropped):
            continue
        route = next((r for r in routes if key.startswith(r.prefix)), None)
        if route is None:
            unclaimed.append(key)
            continue
        groups[route][key[len(route.prefix) :]] = value
    state = {}
    for route, group in groups.items():
        converted = route.convert(group) if route.convert is not None else group
        state.update({route.target + k: v for k, v in converted.items()})
    return state, unclaimed


def unmap_weights(state: dict[str, torch.Tensor], routes: Iterable[Route]) -> dict[str, torch.Tensor]:
    """The inverse of ``map_weights``: our state dict back to released key names and tensor layouts.

    Every key must be claimed by exactly one route (``Route.claims``), and no two routes may write the same
    released key; anything else raises, listing the keys.
    """
    routes = list(routes)
    groups: dict[Route, dict[str, torch.Tensor]] = {r: {} for r in routes}
    unclaimed, ambiguous = [], []
    for key, value in state.items():
        owners = [r for r in routes if r.claims(key)]
        if len(owners) != 1:
            (ambiguous if owners else unclaimed).append(key)
            continue
        groups[owners[0]][key[len(owners[0].target) :]] = value
    if unclaimed or ambiguous:
        raise CheckpointError(
            f"cannot name every tensor in the released layout: {len(unclaimed)} keys no route claims "
            f"{sorted(unclaimed)[:20]}, {len(ambiguous)} claimed by several routes {sorted(ambiguous)[:20]}"
        )
    released: dict[str, torch.Tensor] = {}
    for route, group in groups.items():
        if not group:
            continue
        if route.convert is not None and route.release is None:
            raise CheckpointError(f"route {route.prefix!r} -> {route.target!r} converts but has no inverse (release)")
        converted = route.release(group) if route.release is not None else group
        for key, value in converted.items():
            name = route.prefix + key
            if name in released:
                raise CheckpointError(f"two tensors would be saved as {name!r}")
            released[name] = value
    return released


def check_state(module: torch.nn.Module, state: dict[str, torch.Tensor], unclaimed: list[str]) -> None:
    """Raise one error listing missing keys, unexpected keys and shape mismatches, if there are any."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected)) + sorted(unclaimed)
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        for title, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        ):
            if items:
                shown = "\n  ".join(items[:50]) + (f"\n  ... {len(items) - 50} more" if len(items) > 50 else "")
                parts.append(f"{len(items)} {title}:\n  {shown}")
        raise CheckpointError("checkpoint does not fit the model:\n" + "\n".join(parts))
