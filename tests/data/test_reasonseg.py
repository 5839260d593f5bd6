"""ReasonSeg converter: labelme fixture -> samples -> shards -> read back, faithfully; LISA's raster, bit-exactly."""

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.data import make_key, read_samples, write_shards
from pipeline.data.fixtures.reasonseg import box, shape, write_reasonseg
from pipeline.data.fixtures.refcoco import image_mismatches
from pipeline.data.layouts import reasonseg
from pipeline.data.reader import Sample

# cv2.polylines(m, pts, True, 1, 1) + cv2.fillPoly(m, pts, 1) with pts = np.array([points], dtype=np.int32), as
# LISA get_mask_from_json draws, run with opencv-python-headless 4.8.0.74 and 5.0.0.93: (name, size, points,
# OpenCV 4.8 rows, OpenCV 4.12+ rows or None when the same). "#" = 1.
GOLDEN = [
    (
        "concave",
        (12, 16),
        [[1.7, 1.2], [13.9, 2.5], [7.2, 5.1], [12.6, 10.8], [2.4, 9.9]],
        (
            "................",
            ".#######........",
            ".#############..",
            ".############...",
            ".##########.....",
            ".########.......",
            "..#######.......",
            "..########......",
            "..#########.....",
            "..##########....",
            "........#####...",
            "................",
        ),
        None,  # OpenCV 4.12 gives the same
    ),
    (
        "spills",
        (10, 10),
        [[-3.5, 2.2], [8.4, 0.3], [12.7, 8.9], [4.1, 11.6]],
        (
            ".......##.",
            "...######.",
            "##########",
            "##########",
            "##########",
            "##########",
            "##########",
            ".#########",
            "..########",
            "...#######",
        ),
        (
            ".......##.",
            "...######.",
            "##########",
            "##########",
            "##########",
            "##########",
            ".#########",
            ".#########",
            "..########",
            "...#######",
        ),
    ),
    (
        "two points",
        (8, 9),
        [[1.5, 6.5], [7.9, 1.2]],
        (
            ".........",
            ".......#.",
            "......#..",
            ".....#...",
            "...##....",
            "..#......",
            ".#.......",
            ".........",
        ),
        None,  # OpenCV 4.12 gives the same
    ),
    (
        "one point",
        (6, 7),
        [[3.2, 2.8]],
        (
            ".......",
            ".......",
            "...#...",
            ".......",
            ".......",
            ".......",
        ),
        None,  # OpenCV 4.12 gives the same
    ),
    (
        "bow tie",
        (14, 13),
        [[2.0, 1.0], [11.0, 12.0], [11.0, 1.0], [2.0, 12.0]],
        (
            ".............",
            "..#........#.",
            "..##......##.",
            "..###....###.",
            "..###....###.",
            "..####..####.",
            "..##########.",
            "..##########.",
            "..####..####.",
            "..###....###.",
            "..###....###.",
            "..##......##.",
            "..#........#.",
            ".............",
        ),
        None,  # OpenCV 4.12 gives the same
    ),
    (
        "far outside",
        (10, 12),
        [[5.0, -20.0], [30.0, 4.0], [6.0, 25.0], [-15.0, 5.0]],
        (
            "############",
            "############",
            "############",
            "############",
            "############",
            "############",
            "############",
            "############",
            "############",
            "############",
        ),
        None,  # OpenCV 4.12 gives the same
    ),
    (
        "slanted",
        (16, 16),
        [[3.0, 1.0], [14.0, 6.0], [10.0, 14.0], [1.0, 11.0], [6.0, 7.0]],
        (
            "................",
            "...##...........",
            "...####.........",
            "....#####.......",
            "....#######.....",
            ".....########...",
            ".....##########.",
            "......#########.",
            ".....#########..",
            "...###########..",
            "..###########...",
            ".############...",
            "...#########....",
            "......######....",
            ".........##.....",
            "................",
        ),
        (
            "................",
            "...##...........",
            "...####.........",
            "....#####.......",
            "....#######.....",
            ".....########...",
            ".....##########.",
            "......########..",
            ".....#########..",
            "...##########...",
            "..###########...",
            ".###########....",
            "...#########....",
            "......#####.....",
            ".........##.....",
            "................",
        ),
    ),
]


def _round_trip(samples, out: Path) -> list[Sample]:
    write_shards(samples, str(out), prefix="t")
    read = list(read_samples(str(out / "manifest.json")))
    assert all(isinstance(s, Sample) for s in read), read
    return read


def _rows(mask: np.ndarray) -> tuple[str, ...]:
    return tuple("".join(".#"[int(v)] for v in row) for row in mask)


@pytest.mark.parametrize("case", GOLDEN, ids=[c[0] for c in GOLDEN])
def test_raster_matches_opencv(case):
    _, (height, width), points, rows_48, rows_412 = case
    pixels = [(int(x), int(y)) for x, y in points]  # LISA's int32 cast truncates toward zero
    assert _rows(reasonseg.fill_polygon(pixels, height, width, rule="opencv-4.8")) == rows_48
    assert _rows(reasonseg.fill_polygon(pixels, height, width, rule="opencv-4.12")) == (rows_412 or rows_48)


@pytest.mark.parametrize("fill_rule", reasonseg.FILL_RULES)
def test_round_trip(tmp_path, fill_rule):
    expected = write_reasonseg(tmp_path / "ReasonSeg")
    samples = _round_trip(reasonseg.convert(expected.root, split="val", fill_rule=fill_rule), tmp_path / "out")
    assert image_mismatches(samples, expected) == []


def test_content(tmp_path):
    expected = write_reasonseg(tmp_path / "ReasonSeg")
    many, nested, cp1252, rotated = _round_trip(reasonseg.convert(expected.root, split="val"), tmp_path / "out")
    assert [(e.id, e.kind, e.object_ids) for e in many.expressions] == [
        ("0", "reasoning", ("target",)),
        ("1", "reasoning", ("target",)),
        ("2", "reasoning", ("target",)),
    ]
    assert many.meta["gt"]["ignore"] is None and many.meta["source"]["ids"] == {"is_sentence": False}
    assert nested.meta["source"]["ids"] == {"is_sentence": True}
    assert cp1252.expressions[0].text == "what is the chef\u2019s knife used for \u2013 cutting?"
    assert cp1252.ignore() is not None  # labelled "Ignore": LISA's test is case-insensitive
    assert rotated.meta["source"]["original_id"] == "4004.side.v2.jpg"
    assert rotated.key == make_key("reasonseg", "val", "4004.side.v2") and "." not in rotated.key
    assert rotated.meta["source"]["ids"] == {"is_sentence": False, "exif_orientation": 6}
    assert rotated.size == (24, 40)  # the stored pixels; upright the image is 40 x 24
    # The mask sits on the drawn (red) pixels of the stored frame the reader decodes (JPEG blurs the edges).
    red = rotated.frames()[0][..., 0].astype(int)
    target = rotated.mask("target")
    assert red[target].mean() > 200 and red[~target].mean() < 100


def test_painting_order_is_lisas():
    size = (20, 20)
    # File order small first: painting in file order would let the big shapes cover the small ones.
    shapes = [shape("target", (5, 5, 8, 8)), shape("ignore", (0, 0, 19, 19)), shape("FLAG", (0, 0, 19, 19))]
    canvas = reasonseg.paint_shapes(shapes, size, "opencv-4.8")
    assert np.array_equal(canvas == 1, box(size, (5, 5, 8, 8)))
    assert np.array_equal(canvas == 255, box(size, (0, 0, 19, 19)) & ~box(size, (5, 5, 8, 8)))
    # Equal areas: LISA's reversed argsort paints the later shape first, so the first one in the file wins.
    tied = reasonseg.paint_shapes([shape("target", (0, 0, 9, 9)), shape("ignore", (5, 5, 14, 14))], size, "opencv-4.8")
    assert tied[7, 7] == 1
    tied = reasonseg.paint_shapes([shape("ignore", (5, 5, 14, 14)), shape("target", (0, 0, 9, 9))], size, "opencv-4.8")
    assert tied[7, 7] == 255


def test_unorient_undoes_pil_exif_transpose():
    from PIL import Image, ImageOps

    stored = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for orientation in range(1, 9):
        image = Image.fromarray(stored)
        exif = image.getexif()
        exif[reasonseg.EXIF_ORIENTATION] = orientation
        image.info["exif"] = exif.tobytes()
        upright = np.asarray(ImageOps.exif_transpose(image))
        assert np.array_equal(reasonseg.unorient(upright, orientation), stored), orientation


def test_reconversion_is_byte_identical(tmp_path):
    root = write_reasonseg(tmp_path / "ReasonSeg").root
    first = write_shards(reasonseg.convert(root, split="val"), str(tmp_path / "a"))
    second = write_shards(reasonseg.convert(root, split="val"), str(tmp_path / "b"))
    assert [s.sha256 for s in first] == [s.sha256 for s in second]
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()


def _json(root: Path, name: str = "1001_1234567890") -> Path:
    return root / "val" / f"{name}.json"


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(text="the cup"), r"'text' must be a non-empty list of strings"),
        (lambda d: d.update(text=[]), r"'text' must be a non-empty list of strings"),
        (lambda d: d.pop("is_sentence"), r"'is_sentence' must be true or false, got None"),
        (lambda d: d.update(shapes={}), r"'shapes' must be a list"),
        (lambda d: d["shapes"][0].pop("label"), r"shape #0 has no string 'label'"),
        (lambda d: d["shapes"][0].update(points=[]), r"shape #0: 'points' must be a non-empty list"),
        (lambda d: d["shapes"][0].update(points=[[1, 2, 3]]), r"shape #0: point \[1, 2, 3\] is not \[x, y\]"),
        (lambda d: d.update(imageHeight=31), r"imageHeight/imageWidth 31x40 differ from the image's 30x40"),
    ],
)
def test_malformed_json(tmp_path, change, message):
    root = write_reasonseg(tmp_path / "ReasonSeg").root
    _edit(_json(root), change)
    with pytest.raises(ValueError, match=rf"1001_1234567890\.json: {message}"):
        list(reasonseg.convert(root, split="val"))


def test_unreadable_and_missing_files(tmp_path):
    root = write_reasonseg(tmp_path / "ReasonSeg").root
    _json(root).write_bytes(b'{"text": ["\x81"]}')  # 0x81: invalid UTF-8 and undefined in cp1252
    with pytest.raises(ValueError, match=r"1001_1234567890\.json: neither UTF-8 nor cp1252"):
        list(reasonseg.convert(root, split="val"))
    _json(root).write_text("{")
    with pytest.raises(ValueError, match=r"1001_1234567890\.json: not valid JSON"):
        list(reasonseg.convert(root, split="val"))
    _json(root).unlink()
    with pytest.raises(ValueError, match=r"1001_1234567890\.json: missing"):
        list(reasonseg.convert(root, split="val"))
    with pytest.raises(ValueError, match=r"test: missing split folder"):
        list(reasonseg.convert(root, split="test"))
    (root / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: no \.jpg images"):
        list(reasonseg.convert(root, split="empty"))
    with pytest.raises(ValueError, match=r"unknown fill_rule 'cv2'"):
        list(reasonseg.convert(root, split="val", fill_rule="cv2"))
