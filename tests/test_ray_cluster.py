"""ray_cluster.yaml: the cluster launcher's own JSON schema, Ray's offline validation, and our own rules.

Nothing here talks to AWS. The schema is the one shipped inside the installed Ray
(``ray/autoscaler/ray-schema.json``); if it cannot be found the tests fail rather than skip, since a
config that was never validated must not look green.
"""

import copy
import importlib.resources
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG_PATH = ROOT / "ray_cluster.yaml"

# Top-level command lists of the launcher config, and the per-node-type lists that replace them.
COMMAND_KEYS = (
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
)
NODE_COMMAND_KEYS = ("initialization_commands", "worker_setup_commands")

# EC2 families with accelerators: NVIDIA (g, p), AMD (g4ad), Inferentia, Trainium, Gaudi (dl), video (vt).
ACCELERATOR_FAMILY = re.compile(r"^(g|p|inf|trn|dl|vt)\d")

# A command fetches model weights from a hub if it names a hub or its clients, or pulls a weight file
# with a generic downloader. Syncing the user's own bucket (aws s3 sync) is allowed.
HUB_PATTERNS = (
    r"huggingface\.co",
    r"\bhf\.co\b",
    r"huggingface-cli",
    r"\bhf\s+(download|snapshot)\b",
    r"huggingface_hub",
    r"hf_hub_download",
    r"snapshot_download",
    r"from_pretrained\(\s*['\"][\w.-]+/[\w.-]+['\"]",  # a hub id such as "weic22/HyperSeg-3B"
    r"modelscope",
    r"torch\.hub",
    r"\bgit\s+lfs\b",
    r"\b(wget|curl|aria2c)\b.*\.(safetensors|bin|pt|pth|ckpt|gguf)\b",
)


def hub_downloads(command: str) -> list[str]:
    """The hub patterns a shell command matches (empty: it downloads no weights from a hub)."""
    return [p for p in HUB_PATTERNS if re.search(p, command, flags=re.I)]


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CONFIG_PATH.read_text())


@pytest.fixture(scope="module")
def schema() -> dict:
    # Imported here so that a missing Ray fails these tests instead of skipping them.
    import ray.autoscaler

    path = importlib.resources.files(ray.autoscaler) / "ray-schema.json"
    assert path.is_file(), (
        f"the cluster launcher's JSON schema is not where Ray {_ray_version()} keeps it: {path}; "
        "find its new place in the installed ray package and update this test"
    )
    return json.loads(path.read_text())


def _ray_version() -> str:
    import ray

    return ray.__version__


def head(config: dict) -> dict:
    return config["available_node_types"][config["head_node_type"]]


def gpu_workers(config: dict) -> dict[str, dict]:
    return {k: v for k, v in config["available_node_types"].items() if k != config["head_node_type"]}


def all_commands(config: dict) -> list[str]:
    commands = [c for key in COMMAND_KEYS for c in config.get(key, [])]
    for node in config["available_node_types"].values():
        commands += [c for key in NODE_COMMAND_KEYS for c in node.get(key, [])]
    return commands


def merged(config: dict, kind: str) -> list[str]:
    """What the launcher runs in a node's container before Ray starts: setup_commands, then the kind's own."""
    return config.get("setup_commands", []) + config.get(f"{kind}_setup_commands", [])


def repo_mount(config: dict) -> str:
    """The remote path the repository (local ".", the root `ray up` runs from) is synced to."""
    mounts = [remote for remote, local in config.get("file_mounts", {}).items() if local.rstrip("/") == "."]
    assert len(mounts) == 1, f"expected one file mount of the repository ('.'), got {mounts}"
    return mounts[0].rstrip("/")


def image_tag(image: str) -> tuple[str, str, str]:
    """rayproject/ray:{ray}-py{python}-{platform} -> (ray, python, platform)."""
    match = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-(py\d+)-(cpu|gpu|cu\d+)", image)
    assert match, f"not a pinned rayproject/ray:{{ray}}-py{{python}}-{{platform}} tag: {image!r}"
    return match.group(1), match.group(2), match.group(3)


# --- the launcher's own checks ------------------------------------------------------------------------------


def test_schema_ships_with_ray(schema):
    jsonschema.Draft7Validator.check_schema(schema)
    assert {"cluster_name", "provider"} <= set(schema["required"])


def test_config_matches_the_launcher_schema(config, schema):
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(config), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_schema_check_bites(config, schema):
    # A fractional GPU or an unknown key must fail, or the test above would pass on anything.
    fractional = copy.deepcopy(config)
    name = next(iter(gpu_workers(fractional)))
    fractional["available_node_types"][name]["resources"]["GPU"] = 0.5
    unknown = copy.deepcopy(config)
    unknown["available_node_types"][name]["gpus_per_node"] = 1
    for bad in (fractional, unknown):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema, cls=jsonschema.Draft7Validator)


def test_ray_offline_validation(config):
    # Private API (ray.md §4.1): defaults from Ray's AWS defaults.yaml, then the schema plus the
    # cross-field checks (head_node_type exists, sum of min_workers <= max_workers). No AWS access.
    from ray.autoscaler._private.commands import prepare_config
    from ray.autoscaler._private.util import validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


# --- our rules ----------------------------------------------------------------------------------------------


def test_gpu_worker_declares_one_gpu(config):
    # Declared, not left to the AWS provider's inference from the instance type, which needs AWS
    # credentials at `ray up` time: the scheduler and this test see it offline.
    workers = gpu_workers(config)
    assert workers, "no worker node type"
    for name, node in workers.items():
        assert node["resources"].get("GPU") == 1, f"{name}: one GPU per node, one model copy per GPU"
        assert node["resources"].get("CPU", 0) >= 1, f"{name}: read tasks need CPUs on the GPU nodes"
        assert ACCELERATOR_FAMILY.match(node["node_config"]["InstanceType"]), f"{name}: not a GPU instance"
    assert image_tag(config["docker"]["worker_image"])[2] != "cpu"


def test_autoscaling_bounds(config):
    nodes = config["available_node_types"]
    for name, node in nodes.items():
        low, high = node.get("min_workers", 0), node.get("max_workers", config["max_workers"])
        assert 0 <= low <= high <= config["max_workers"], f"{name}: min {low}, max {high}"
    assert sum(node.get("min_workers", 0) for node in nodes.values()) <= config["max_workers"]
    assert config["idle_timeout_minutes"] > 0
    # A job picks GPU or CPU actors from the GPUs present when it starts (pipeline/engine/run.py).
    assert any(node["min_workers"] >= 1 for node in gpu_workers(config).values()), "keep one GPU node up"


def test_head_runs_no_gpu_work(config):
    node = head(config)
    assert node["resources"].get("GPU") == 0, "the head must advertise no GPU"
    assert node["resources"].get("CPU") == 0, "the head must take no tasks or actors"
    assert node.get("max_workers", 0) == 0
    assert not ACCELERATOR_FAMILY.match(node["node_config"]["InstanceType"]), "the head must be a CPU instance"
    assert image_tag(config["docker"]["head_image"])[2] == "cpu", "the head runs the CPU image"
    head_torch = [c for c in config["head_setup_commands"] if re.search(r"pip install .*\btorch\b", c)]
    assert head_torch and all("/whl/cpu" in c for c in head_torch), head_torch


@pytest.mark.parametrize("kind", ["head", "worker"])
def test_setup_installs_the_project(config, kind):
    commands = merged(config, kind)
    mount = repo_mount(config)
    project = [i for i, c in enumerate(commands) if re.search(rf"pip install .*-e {re.escape(mount)}/?(\s|$)", c)]
    torch = [i for i, c in enumerate(commands) if re.search(r"pip install .*\btorch==[\d.]+", c)]
    assert project, f"{kind}: no `pip install -e {mount}`"
    # torch first, from the PyTorch index: the project's `torch>=2.4` then keeps it.
    assert torch and torch[0] < project[0], f"{kind}: install torch before the project"
    index = "/whl/cpu" if kind == "head" else "/whl/cu"
    assert index in commands[torch[0]], f"{kind}: torch from the wrong index: {commands[torch[0]]}"


def test_ray_and_python_are_the_same_everywhere(config):
    head_ray, head_py, _ = image_tag(config["docker"]["head_image"])
    worker_ray, worker_py, _ = image_tag(config["docker"]["worker_image"])
    assert (head_ray, head_py) == (worker_ray, worker_py), "one Ray and one Python on every node"
    pins = set(re.findall(r"ray\[[\w,]+\]==([\d.]+)", " ".join(config["setup_commands"])))
    assert pins == {head_ray}, f"setup pins Ray {pins}, the images carry {head_ray}"


def test_no_command_downloads_weights_from_a_hub(config):
    commands = all_commands(config)
    commands += [f"{remote} {local}" for remote, local in config.get("file_mounts", {}).items()]
    found = {c: hub_downloads(c) for c in commands if hub_downloads(c)}
    assert not found, found
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert "HF_HUB_OFFLINE=1" in config[key][-1], f"{key}: Ray workers must not reach the Hub"


@pytest.mark.parametrize(
    "command",
    [
        "huggingface-cli download weic22/HyperSeg-3B --local-dir ~/models",
        "hf download weic22/HyperSeg-3B",
        "python -c \"from huggingface_hub import snapshot_download; snapshot_download('weic22/HyperSeg-3B')\"",
        "git lfs install && git clone https://huggingface.co/weic22/HyperSeg-3B",
        "wget -q https://example.org/HyperSeg-3B/model-00001-of-00002.safetensors",
        "python -c \"AutoModel.from_pretrained('weic22/HyperSeg-3B')\"",
    ],
)
def test_the_hub_check_catches_downloads(command):
    assert hub_downloads(command)


@pytest.mark.parametrize(
    "command",
    [
        "pip install --quiet torch==2.13.0 --index-url https://download.pytorch.org/whl/cu130",
        "aws s3 sync s3://my-bucket/models/HyperSeg-3B ~/models/HyperSeg-3B",
        "export HF_HUB_OFFLINE=1",
    ],
)
def test_the_hub_check_allows_the_rest(command):
    assert not hub_downloads(command)


def test_token_auth_on_every_node(config):
    # Ray 2.60 turns token auth on by itself only for a local ray.init(); cluster nodes need the mode
    # set and the token shipped (ray.md §3.3).
    mounts = {remote.replace("~", "$HOME", 1): local for remote, local in config["file_mounts"].items()}
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = config[key][-1]
        assert "ray start" in start and "RAY_AUTH_MODE=token" in start, key
        path = re.search(r"RAY_AUTH_TOKEN_PATH=(\S+)", start)
        assert path, f"{key}: no RAY_AUTH_TOKEN_PATH"
        assert mounts.get(path.group(1)) == "~/.ray/auth_token", f"{key}: the token file is not mounted there"


def test_start_commands_keep_the_launcher_flags(config):
    head_start = config["head_start_ray_commands"][-1]
    for flag in ("--head", "--port=6379", "--autoscaling-config=~/ray_bootstrap_config.yaml"):
        assert flag in head_start, flag
    assert "--address=$RAY_HEAD_IP:6379" in config["worker_start_ray_commands"][-1]
    assert config["head_start_ray_commands"][0] == config["worker_start_ray_commands"][0] == "ray stop"


def test_sync_leaves_local_clutter_behind(config):
    # .venv/ and caches stay on the laptop: the launcher honours the repository's .gitignore.
    assert ".gitignore" in config["rsync_filter"]
    assert ".venv/" in (ROOT / ".gitignore").read_text().splitlines()
