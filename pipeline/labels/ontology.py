"""The prompt ontology: which category each prompt's masks belong to.

A JSON or YAML map from prompt text to its category, given as ``{"name": ..., "id": ...}`` or as the name alone
(ids are then numbered from 1 in order of the names). Several prompts may share a category::

    the red circle: {name: circle, id: 1}
    a round red shape: {name: circle, id: 1}
    the blue square: square

Without an ontology every prompt is its own category, named by its text, numbered in sorted order.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import fsspec
import yaml


class OntologyError(ValueError):
    """An ontology that cannot be used; the message says which entries are wrong."""


@dataclass(frozen=True)
class Category:
    id: int
    name: str


@dataclass(frozen=True)
class Ontology:
    """Prompt text -> category."""

    categories: dict[str, Category]

    @classmethod
    def from_mapping(cls, mapping: dict) -> "Ontology":
        if not isinstance(mapping, dict) or not mapping:
            raise OntologyError("an ontology must be a non-empty map from prompt to category")
        named = sorted({str(v) for v in mapping.values() if isinstance(v, str)})
        numbered = {name: i + 1 for i, name in enumerate(named)}
        out, bad = {}, []
        for prompt, value in mapping.items():
            if isinstance(value, str):
                value = {"name": value, "id": None}
            if not isinstance(value, dict) or set(value) - {"name", "id"} or not isinstance(value.get("name"), str):
                bad.append(f"{prompt!r}: {value!r}")
                continue
            ident = value.get("id")
            if ident is None:
                if value["name"] not in numbered:  # a dict without an id: numbered after the plain names
                    numbered[value["name"]] = len(numbered) + 1
                ident = numbered[value["name"]]
            if isinstance(ident, bool) or not isinstance(ident, int) or ident < 1:
                bad.append(f"{prompt!r}: id {ident!r} is not a positive integer")
                continue
            out[str(prompt)] = Category(ident, value["name"])
        if bad:
            raise OntologyError("bad ontology entries (want {name, id} or a name): " + "; ".join(bad))
        by_id, by_name = {}, {}
        for category in out.values():
            by_id.setdefault(category.id, set()).add(category.name)
            by_name.setdefault(category.name, set()).add(category.id)
        clashes = [f"id {i} names {sorted(n)}" for i, n in by_id.items() if len(n) > 1]
        clashes += [f"{name!r} has ids {sorted(i)}" for name, i in by_name.items() if len(i) > 1]
        if clashes:
            raise OntologyError("inconsistent ontology: " + "; ".join(clashes))
        return cls(out)

    @classmethod
    def load(cls, path: str) -> "Ontology":
        """From a ``.json``, ``.yaml`` or ``.yml`` file (local or any fsspec URL)."""
        try:
            with fsspec.open(path, "rt", encoding="utf-8") as f:
                text = f.read()
        except (OSError, ValueError) as error:
            raise OntologyError(f"cannot read the ontology {path}: {error}") from None
        try:
            mapping = json.loads(text) if Path(path).suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as error:
            kind = "JSON" if path.endswith(".json") else "YAML"
            raise OntologyError(f"{path} is not valid {kind}: {error}") from None
        return cls.from_mapping(mapping)

    @classmethod
    def identity(cls, prompts: Iterable[str]) -> "Ontology":
        """Every prompt its own category, numbered in sorted order."""
        return cls({p: Category(i + 1, p) for i, p in enumerate(sorted(set(prompts)))})

    def check(self, prompts: Iterable[str]) -> None:
        """Raise, listing them, if some prompts have no category."""
        missing = sorted(set(prompts) - set(self.categories))
        if missing:
            raise OntologyError(f"{len(missing)} prompts are not in the ontology: " + "; ".join(map(repr, missing)))

    def category_list(self) -> list[Category]:
        """Each category once, by id."""
        return sorted(set(self.categories.values()), key=lambda c: c.id)
