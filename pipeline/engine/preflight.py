"""What a job checks before any work starts: a configuration error is one line on stderr and exit code 2.

The checks are cheap: the shards resolve to at least one URL, the checkpoint folder holds a config and weights
(safetensors), the preset, method and keep are known and in range, and the output folder takes a write.
"""

import os
import socket
import sys
import uuid
from typing import NoReturn

import fsspec

from ..config import MODEL_METHODS, RunConfig


class ConfigError(ValueError):
    """A configuration that cannot run; its message is the one line the user sees."""


def fail(program: str, error: Exception) -> NoReturn:
    """Print ``<program>: error: <message>`` on stderr and exit with code 2 (argparse's convention)."""
    print(f"{program}: error: {error}", file=sys.stderr)
    raise SystemExit(2)


def check_keep(keep) -> None:
    if isinstance(keep, bool) or not isinstance(keep, (int, float)):
        raise ConfigError(f"--keep must be a ratio in (0, 1] or a count >= 1, got {keep!r}")
    if isinstance(keep, float) and not 0.0 < keep <= 1.0:
        raise ConfigError(f"--keep {keep:g}: a ratio must be in (0, 1] (a count is a whole number such as 64)")
    if isinstance(keep, int) and keep < 1:
        raise ConfigError(f"--keep {keep}: a count of kept tokens must be at least 1")


def check_method(method: str) -> None:
    from ..pruning.select import METHODS

    # "attention" ranks by scores the caller passes; the jobs have none to give it.
    known = sorted({*METHODS, *MODEL_METHODS} - {"attention"})
    if method not in known:
        raise ConfigError(f"--method {method!r} is not a known method; expected one of {', '.join(known)}")


def check_model(model) -> None:
    from ..model.config import PRESETS
    from ..model.parts.checkpoint import CheckpointError, read_config, weight_files

    if model.preset is not None:
        if model.preset not in PRESETS:
            raise ConfigError(f"--preset {model.preset!r} is not a known preset; expected one of {', '.join(PRESETS)}")
        return
    folder = str(model.checkpoint)
    if not os.path.isdir(folder):
        raise ConfigError(f"--checkpoint {folder}: no such folder")
    try:
        read_config(folder)
        weight_files(folder)
    except (CheckpointError, OSError, ValueError) as error:
        raise ConfigError(f"--checkpoint {folder}: {error}") from None


def check_shards(source: str) -> list[str]:
    """The shard URLs ``--shards`` names (at least one); a single named file must exist."""
    from ..data import shard_urls

    try:
        urls = shard_urls(source)
    except (OSError, ValueError, KeyError) as error:
        raise ConfigError(f"--shards {source}: cannot be read ({error})") from None
    if not urls:
        raise ConfigError(f"--shards {source}: names no shard (no manifest.json, no .tar, no match)")
    if len(urls) == 1:
        fs, path = fsspec.core.url_to_fs(urls[0])
        if not fs.exists(path):
            raise ConfigError(f"--shards {source}: {urls[0]} does not exist")
    return urls


def check_output(uri: str) -> None:
    """The run folder can be made and written (a probe file is written and removed)."""
    try:
        fs, root = fsspec.core.url_to_fs(uri.rstrip("/"))
        fs.makedirs(root, exist_ok=True)
        probe = f"{root}/.write-probe-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with fs.open(probe, "wb") as f:
            f.write(b"ok")
        fs.rm(probe)
    except (OSError, ValueError) as error:
        raise ConfigError(f"--output {uri}: not writable ({error})") from None


def check_run(config: RunConfig) -> None:
    """Every check of a job's configuration (the output folder is checked before the fixture is written)."""
    check_keep(config.pruning.keep)
    check_method(config.pruning.method)
    check_model(config.model)
    if config.pruning.references:
        check_references(config.model)
    check_shards(config.data.shards)


def check_references(model) -> None:
    """Pruning the reference frames (``--prune-references``) needs an InstructSeg model."""
    from ..model.config import config_from_checkpoint, preset
    from ..model.instructseg.predictor import InstructSegPredictor
    from ..model.load import predictor_class

    family = predictor_class(preset(model.preset) if model.preset else config_from_checkpoint(model.checkpoint))
    if not issubclass(family, InstructSegPredictor):
        name = f"--preset {model.preset}" if model.preset else f"--checkpoint {model.checkpoint}"
        raise ConfigError(f"--prune-references applies to InstructSeg only; {name} is a HyperSeg model")
