"""RunConfig: everything a run depends on, validated up front and saved with the run as JSON."""

import dataclasses
import json
from dataclasses import dataclass, field

from .pruning import METHODS

DTYPES = ("auto", "float32", "bfloat16", "float16")
# How kept image tokens are numbered in the LLM (pipeline.model.parts.llm.assemble).
POSITION_POLICIES = ("contiguous", "original")
# Methods that prune inside the model rather than on the vision-encoder output
# (pipeline.model.token_pruning.fastv): the encoder keeps every token and the LLM drops them, so they are not
# ``pipeline.pruning.METHODS``.
MODEL_METHODS = ("fastv",)


@dataclass(frozen=True)
class PruningConfig:
    """Which visual tokens of each frame reach the LLM.

    Attributes:
        method: a ``pipeline.pruning.METHODS`` name (``none`` keeps all 729) or a ``MODEL_METHODS`` one.
        keep: ratio in (0, 1] or a count.
        options: the method's options, as ``(name, value)`` pairs (e.g. ``(("alpha", 1.0),)``; ``fastv`` takes
            ``layer``, ``visionzip`` ``contextual``).
        position_ids: ``contiguous`` (default) or ``original`` (see ``llm.assemble``).
        references: InstructSeg only: also prune the reference frames' tokens, the same way, before the OVP
            (off: the OVP reads all of them, as the release does).
    """

    method: str = "none"
    keep: float | int = 1.0
    options: tuple[tuple[str, object], ...] = ()
    position_ids: str = "contiguous"
    references: bool = False

    def __post_init__(self) -> None:
        if self.position_ids not in POSITION_POLICIES:
            raise ValueError(f"position_ids must be one of {POSITION_POLICIES}, got {self.position_ids!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Which weights: a preset with seeded random weights, or a checkpoint folder in the released layout."""

    preset: str | None = "tiny"
    checkpoint: str | None = None
    dtype: str = "auto"  # float32 on CPU, bfloat16 on CUDA
    attn_implementation: str = "sdpa"
    seed: int = 0
    # Run the prompt up to the instruction once per frame for all its expressions (HyperSegPredictor).
    share_prefix: bool = True
    # torch.compile SigLIP and the LLM (HyperSegPredictor.compile): the same rows up to float rounding.
    compile: bool = False

    def __post_init__(self) -> None:
        if (self.preset is None) == (self.checkpoint is None):
            raise ValueError("give exactly one of a preset or a checkpoint")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")


@dataclass(frozen=True)
class DataConfig:
    """The input shards: a URL, glob, brace pattern or manifest (see ``pipeline.data.shard_urls``)."""

    shards: str

    def __post_init__(self) -> None:
        if not self.shards:
            raise ValueError("no input shards given")


@dataclass(frozen=True)
class OutputConfig:
    """The run folder (any fsspec URL): one sub-folder per table, ``_done/`` markers."""

    uri: str

    def __post_init__(self) -> None:
        if not self.uri:
            raise ValueError("no output folder given")


@dataclass(frozen=True)
class ClusterConfig:
    """Where to run: ``address`` None starts a local Ray (or joins ``RAY_ADDRESS``); one model copy per actor."""

    address: str | None = None
    actors: int = 1
    batch_size: int = 1  # shards per actor call
    # Attempts at one shard per run before it is given up (left uncommitted, listed in runs.failed_shards):
    # Ray Data retries an actor's task forever, and a sample that kills its process would loop.
    max_attempts: int = 3
    # Tries at reading a shard and writing its tables when storage fails (an ``OSError``: missing, permission,
    # connection, timeout), with exponential backoff from ``io_backoff`` seconds; then it is left uncommitted.
    io_tries: int = 3
    io_backoff: float = 1.0
    # Image samples of one prompt wording segmented in one model call (videos go one at a time: frame order).
    image_batch: int = 8
    # Seconds without a heartbeat after which another driver takes over the run folder's lease (engine/lease.py).
    lease_timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.io_backoff < 0:
            raise ValueError(f"io_backoff must be >= 0, got {self.io_backoff}")
        if self.lease_timeout <= 0:
            raise ValueError(f"lease_timeout must be > 0 seconds, got {self.lease_timeout}")
        if min(self.actors, self.batch_size, self.max_attempts, self.image_batch, self.io_tries) < 1:
            raise ValueError(
                f"actors, batch_size, max_attempts, image_batch and io_tries must be >= 1, got {self.actors}, "
                f"{self.batch_size}, {self.max_attempts}, {self.image_batch}, {self.io_tries}"
            )


@dataclass(frozen=True)
class RunConfig:
    """A whole run: model, pruning, data, output and cluster."""

    data: DataConfig
    output: OutputConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def __post_init__(self) -> None:
        methods = sorted({*METHODS, *MODEL_METHODS})
        if self.pruning.method not in methods:
            raise ValueError(f"unknown pruning method {self.pruning.method!r}; expected one of {methods}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        raw = json.loads(text)
        pruning = raw["pruning"]
        pruning["options"] = tuple(tuple(pair) for pair in pruning["options"])
        return cls(
            data=DataConfig(**raw["data"]),
            output=OutputConfig(**raw["output"]),
            model=ModelConfig(**raw["model"]),
            pruning=PruningConfig(**pruning),
            cluster=ClusterConfig(**raw["cluster"]),
        )
