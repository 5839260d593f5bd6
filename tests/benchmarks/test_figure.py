"""The README's picture is drawn by a script that runs (two scenes, two methods per row)."""

from PIL import Image

from . import run_script


def test_the_readme_picture_is_drawn(tmp_path):
    out = tmp_path / "figure.png"
    run_script("figure.py", "--scenes", "3", "--out", str(out))
    picture = Image.open(out)
    assert picture.height > 300 and picture.width > 300  # a 300-px panel per method side by side, and titles
