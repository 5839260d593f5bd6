"""Configuration errors are caught before any work starts: one line on stderr, exit code 2, nothing written; a
shards folder is read as its manifest or its tars; a run whose every sample fails exits 1."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "jobs"))
import pseudo_label  # noqa: E402

from pipeline.data import shard_urls, write_shards  # noqa: E402
from pipeline.engine import worker  # noqa: E402
from pipeline.engine.cli import SHIPPED_CHECKPOINT  # noqa: E402
from tests.samples import image_sample  # noqa: E402


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shards")
    write_shards([image_sample(i) for i in range(4)], str(folder), max_samples=2)
    return folder


def run_job(args: list[str], capsys) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as exit_info:
        pseudo_label.main(args)
    return exit_info.value.code, capsys.readouterr().err.strip().splitlines()


def test_each_configuration_error_is_one_line_and_exit_2_before_any_work(shards, tmp_path, capsys):
    weightless = tmp_path / "weightless"
    weightless.mkdir()
    (weightless / "config.json").write_text((SHIPPED_CHECKPOINT / "config.json").read_text())
    (tmp_path / "a-file").write_text("")
    empty = tmp_path / "empty"
    empty.mkdir()
    manifest = str(shards / "manifest.json")
    cases = [
        (["--keep", "0"], "--keep 0: a count of kept tokens must be at least 1"),
        (["--keep", "1.5"], "--keep 1.5: a ratio must be in (0, 1]"),
        (["--keep", "-0.2"], "--keep -0.2: a ratio must be in (0, 1]"),
        (["--method", "evtpp"], "unknown pruning method 'evtpp'"),
        (["--checkpoint", str(tmp_path / "nowhere")], "no such folder"),
        (["--checkpoint", str(weightless)], "no model.safetensors or model.safetensors.index.json"),
        (["--preset", "huge"], "--preset 'huge' is not a known preset"),
        (["--shards", str(tmp_path / "missing.tar")], "missing.tar does not exist"),
        (["--shards", str(empty)], "names no shard"),
        (["--shards", str(tmp_path / "none-*.tar")], "names no shard"),
        (["--output", str(tmp_path / "a-file" / "run")], "not writable"),
    ]
    for flags, message in cases:
        args = ["--shards", manifest, "--output", str(tmp_path / "run"), "--no-ray", *flags]
        code, err = run_job(args, capsys)
        assert code == 2 and len(err) == 1 and message in err[0] and err[0].startswith(Path(sys.argv[0]).name), (
            flags,
            err,
        )
        assert not (tmp_path / "run" / "predictions").exists(), flags  # no work started


def test_a_shards_folder_is_its_manifest_or_its_tars(shards, tmp_path):
    urls = shard_urls(str(shards / "manifest.json"))
    assert shard_urls(str(shards)) == shard_urls(str(shards) + "/") == urls and len(urls) == 2
    bare = tmp_path / "bare"
    bare.mkdir()
    for url in urls:
        (bare / Path(url).name).write_bytes(Path(url).read_bytes())
    assert shard_urls(str(bare)) == sorted(str(bare / Path(u).name) for u in urls)


def test_a_folder_runs_like_its_manifest(shards, tmp_path):
    assert pseudo_label.main(["--shards", str(shards), "--output", str(tmp_path / "run"), "--no-ray",
                              "--preset", "tiny", "--export", "none"]) == 0  # fmt: skip
    from pipeline.results import load

    assert load(str(tmp_path / "run"), "predictions").sample_key.nunique() == 4


def test_a_run_whose_every_sample_fails_exits_1(shards, tmp_path, monkeypatch, capsys):
    def broken(self, url, sample, *args, **kwargs):
        raise RuntimeError("the model broke")

    monkeypatch.setattr(worker.ShardProcessor, "sample_rows", broken)
    args = ["--shards", str(shards), "--output", str(tmp_path / "run"), "--no-ray", "--preset", "tiny"]
    assert pseudo_label.main([*args, "--export", "none"]) == 1
    assert "every one of the 4 samples failed; see the errors table" in capsys.readouterr().err
