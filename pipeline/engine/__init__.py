"""The Ray side: the shard worker, the run loop with resume, and the Parquet sink. Only this package imports Ray."""

from .run import RunSummary, run

__all__ = ["RunSummary", "run"]
