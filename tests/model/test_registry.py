"""The families register into one registry; the shared code reaches them only through it (no import circle)."""

import ast
from pathlib import Path

import pytest

from pipeline.model import HyperSeg, HyperSegConfig, HyperSegPredictor, InstructSeg, InstructSegPredictor, load
from pipeline.model.config import PRESETS, architecture, preset
from pipeline.model.registry import FAMILIES, family_of, model_for

MODEL = Path(__file__).resolve().parents[2] / "pipeline" / "model"
FAMILY_PACKAGES = ("pipeline.model.hyperseg", "pipeline.model.instructseg")


def test_every_preset_belongs_to_the_family_that_registered_it():
    assert sorted(FAMILIES) == ["HyperSeg", "InstructSeg"]
    for name in PRESETS:
        config = preset(name)
        family = family_of(config)
        assert name in family.presets and model_for(config) is family.model_class
        assert load.predictor_class(config) is family.predictor_class
    assert (model_for(preset("tiny")), load.predictor_class(preset("tiny"))) == (HyperSeg, HyperSegPredictor)
    assert (model_for(preset("instructseg-tiny")), load.predictor_class(preset("instructseg-tiny"))) == (
        InstructSeg,
        InstructSegPredictor,
    )
    with pytest.raises(TypeError, match="no model family"):
        family_of(object())


def test_a_checkpoint_names_its_family_through_the_registry():
    assert architecture({}) == "HyperSeg" and architecture({"architectures": ["InstructSeg"]}) == "InstructSeg"
    with pytest.raises(ValueError, match="name none or several"):
        architecture({"architectures": ["LlavaForCausalLM"]})
    assert isinstance(preset("synth"), HyperSegConfig)


def imports(path: Path) -> set[str]:
    """The modules under pipeline.model a file imports (at any depth in the file), as dotted names."""
    package = ".".join(path.relative_to(MODEL.parents[1]).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            out.add(".".join(base + ([node.module] if node.module else [])))
    return out


def test_the_shared_code_imports_no_family():
    shared = [*(MODEL / "parts").glob("*.py"), *(MODEL / "token_pruning").glob("*.py")]
    shared += [MODEL / name for name in ("config.py", "registry.py", "load.py", "save.py")]
    for path in shared:
        families = {m for m in imports(path) if m.startswith(FAMILY_PACKAGES)}
        assert not families, f"{path.relative_to(MODEL)} imports {sorted(families)}"
