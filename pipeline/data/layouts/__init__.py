"""Converters from the official dataset layouts into shard samples, one module per layout.

Each converter is ``convert(root, *, split, **options) -> Iterator[ShardSample]`` in a deterministic order.
"""

from . import folder, reasonseg, refcoco, refdavis, refytvos, revos

FORMATS = {
    refcoco.FORMAT: refcoco.convert,
    reasonseg.FORMAT: reasonseg.convert,
    **revos.CONVERTERS,
    refytvos.FORMAT: refytvos.convert,
    refdavis.FORMAT: refdavis.convert,
    folder.FORMAT: folder.convert,
}

__all__ = ["FORMATS"]
