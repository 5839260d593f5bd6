"""The README's Python snippets run as written, and its Quick start is what CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_python_snippets_run():
    snippets = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert snippets
    for code in snippets:
        exec(compile(code, "README.md", "exec"), {})


def test_ci_runs_the_readme_test_command():
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^(make \w+)", quick_start, flags=re.M)
    assert commands == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text().splitlines()
