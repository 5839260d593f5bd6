"""Data: the shard sample contract, converters from the official layouts, shard writer and streaming reader."""

from .reader import (
    ReadError,
    Sample,
    ShardUnreadable,
    read_samples,
    read_shard,
    repeated_keys,
    shard_entries,
    shard_keys,
    shard_urls,
)
from .sample import Expression, SampleError, ShardSample, build_meta, make_key, validate
from .writer import ShardInfo, write_shards

__all__ = [
    "Expression",
    "ReadError",
    "ShardUnreadable",
    "Sample",
    "SampleError",
    "ShardInfo",
    "ShardSample",
    "build_meta",
    "make_key",
    "read_samples",
    "read_shard",
    "repeated_keys",
    "shard_entries",
    "shard_keys",
    "shard_urls",
    "validate",
    "write_shards",
]
