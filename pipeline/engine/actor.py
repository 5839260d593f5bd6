"""``ShardWorker``: the callable class Ray Data runs on each actor, one model copy per actor.

Kept apart from ``worker`` so that the driver, which only hands the class to Ray Data, never imports the
model package (transformers takes seconds to import); the actor imports it in ``__init__``.
"""

import json

import numpy as np


class ShardWorker:
    """Loads one model copy in ``__init__``; each call processes whole shards and returns their stats."""

    def __init__(self, config_json: str, run_id: str, cpu_threads: int = 1):
        import torch

        from ..config import RunConfig
        from .worker import STATS, ShardProcessor

        # Ray sets OMP_NUM_THREADS to floor(num_cpus) of the actor, 1 for the fraction a pool gets, so a CPU
        # model would run on one core (ray.md §7.1); the driver says how many this actor's share is.
        if not torch.cuda.is_available():
            torch.set_num_threads(cpu_threads)
        self.stats = STATS
        self.processor = ShardProcessor(RunConfig.from_json(config_json), run_id)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        stats = [
            self.processor.process(str(url), json.loads(str(repeated)))
            for url, repeated in zip(batch["shard"], batch["repeated"], strict=True)
        ]
        return {key: np.array([s[key] for s in stats]) for key in self.stats}
