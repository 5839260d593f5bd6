"""The README's and docs' Python snippets run as written, their links resolve, and the Quick start is what CI
runs."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def snippets(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


@pytest.mark.parametrize("page", [p for p in PAGES if snippets(p)], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_python_snippets_run(page):
    for code in snippets(page):
        exec(compile(code, str(page.relative_to(ROOT)), "exec"), {})


def test_the_readme_is_short_and_its_snippet_runs_in_the_suite():
    assert len(README.encode()) <= 15_000
    assert snippets(ROOT / "README.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)#][^)]*?)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_shell_block_is_run_by_the_suite_or_says_what_it_needs(page):
    """Python blocks run above; a shell or text block opens with a comment naming what runs it in the suite or what
    it needs (a dataset, released weights, a GPU, a cluster)."""
    for block in re.findall(r"```(?:bash|text)\n(.*?)```", page.read_text(), flags=re.S):
        assert block.startswith("# "), f"{page.name}: a block opens without saying what runs it: {block[:80]!r}"


def test_ci_runs_the_readme_test_command():
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^(make \w+)", quick_start, flags=re.M)
    assert commands == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text().splitlines()
