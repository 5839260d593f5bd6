"""Label Studio's brush RLE: how its ``brushlabels`` results store a mask (not COCO's RLE).

The format is thi.ng's rle-pack (github.com/thi-ng/umbrella, packages/rle-pack), which Label Studio's frontend and
label-studio-sdk's ``converter.brush.decode_rle`` read: a bit stream, most significant bit first, of

- a header: the number of values (32 bits), the word size - 1 (5 bits), four run-length field sizes - 1 (4 bits
  each);
- blocks: a repeat flag (1 bit), the index of a field size (2 bits), the block length - 1 in that many bits, then
  one word (a repeated run) or that many words (literals).

The values are the image's RGBA bytes in row-major order, the mask 255 in every channel; the decoder keeps alpha.
"""

import numpy as np

WORD_BITS = 8
RUN_FIELDS = (3, 4, 8, 16)  # bits of a block's length field, chosen per block by the length


def encode(mask: np.ndarray) -> list[int]:
    """An ``(H, W)`` bool mask -> Label Studio's ``rle`` (a list of byte values)."""
    if mask.ndim != 2:
        raise ValueError(f"a mask must be (height, width), got shape {mask.shape}")
    flat = mask.astype(bool).ravel()
    n = flat.size * 4  # RGBA
    bits = [f"{n:032b}", f"{WORD_BITS - 1:05b}", *(f"{f - 1:04b}" for f in RUN_FIELDS)]
    if flat.size:
        edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        starts = np.concatenate([[0], edges])
        lengths = np.diff(np.concatenate([starts, [flat.size]])) * 4
        for value, length in zip(flat[starts].tolist(), lengths.tolist(), strict=True):
            word = f"{255 if value else 0:08b}"
            while length:
                block = min(length, 1 << RUN_FIELDS[-1])
                index = next(i for i, f in enumerate(RUN_FIELDS) if block - 1 < 1 << f)
                bits.append(f"1{index:02b}{block - 1:0{RUN_FIELDS[index]}b}{word}")
                length -= block
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return list(int(stream, 2).to_bytes(len(stream) // 8, "big"))
