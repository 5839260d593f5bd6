"""Filters, overlap removal and the ontology on hand-made cases."""

import math

import numpy as np
import pytest

from pipeline.data import rle
from pipeline.labels.filters import Filters, duplicates
from pipeline.labels.ontology import Category, Ontology, OntologyError


def box(y0, y1, x0, x1, size=(10, 10)) -> dict:
    mask = np.zeros(size, dtype=bool)
    mask[y0:y1, x0:x1] = True
    return rle.encode(mask)


def test_thresholds_give_every_reason():
    filters = Filters(min_score=0.5, min_stability=0.8, min_area=10, max_area_fraction=0.5)
    assert filters.reasons(0.9, 0.9, 10, 0.5) == []
    reasons = filters.reasons(0.2, 0.7, 3, 0.6)
    assert [r.split()[0] for r in reasons] == ["score", "stability", "area", "area"]
    assert filters.reasons(0.9, math.nan, 10, 0.1) == ["stability undefined < 0.8"]
    assert Filters().reasons(0.0, math.nan, 1, 1.0) == []  # defaults: only empty masks go
    assert Filters().reasons(0.9, 1.0, 0, 0.0) == ["area 0 < 1"]
    with pytest.raises(ValueError, match="min_score"):
        Filters(min_score=1.5)
    with pytest.raises(ValueError, match="dedup_iou"):
        Filters(dedup_iou=1.0)


def test_dedup_keeps_the_higher_score_of_overlapping_masks():
    masks = [box(0, 5, 0, 5), box(0, 5, 0, 4), box(5, 10, 5, 10), box(0, 5, 1, 5)]
    # IoU(0, 1) = 20/25 = 0.8; IoU(0, 3) = 0.8; IoU(1, 3) = 15/25 = 0.6; mask 2 overlaps none.
    assert duplicates(masks, [0.5, 0.9, 0.7, 0.6], 0.7) == {0: (1, 0.8)}  # 3 overlaps 1 by only 0.6: kept
    assert duplicates(masks, [0.5, 0.9, 0.7, 0.6], 0.5) == {0: (1, 0.8), 3: (1, 0.6)}
    assert duplicates(masks, [0.9, 0.5, 0.7, 0.6], 0.7) == {1: (0, 0.8), 3: (0, 0.8)}
    assert duplicates(masks, [0.9, 0.5, 0.7, 0.6], 0.8) == {}  # above the threshold, not at it
    assert duplicates(masks[:2], [0.5, 0.5], 0.7) == {1: (0, 0.8)}  # a tie keeps the earlier prompt


def test_ontology_maps_prompts_to_categories(tmp_path):
    path = tmp_path / "ontology.yaml"
    path.write_text("the red circle: {name: circle, id: 7}\na round red shape: {name: circle, id: 7}\nthe box: square")
    ontology = Ontology.load(str(path))
    assert ontology.categories["a round red shape"] == ontology.categories["the red circle"] == Category(7, "circle")
    assert ontology.categories["the box"] == Category(1, "square")
    assert ontology.category_list() == [Category(1, "square"), Category(7, "circle")]
    json_path = tmp_path / "ontology.json"
    json_path.write_text('{"a": "x", "b": "y", "c": "x"}')
    assert Ontology.load(str(json_path)).category_list() == [Category(1, "x"), Category(2, "y")]
    with pytest.raises(OntologyError, match=r"2 prompts are not in the ontology: 'a blue one'; 'the cat'"):
        ontology.check(["the red circle", "the cat", "a blue one"])
    with pytest.raises(OntologyError, match="id 1 names"):
        Ontology.from_mapping({"a": {"name": "x", "id": 1}, "b": {"name": "y", "id": 1}})
    with pytest.raises(OntologyError, match="positive integer"):
        Ontology.from_mapping({"a": {"name": "x", "id": 0}})
    with pytest.raises(OntologyError, match="not valid YAML"):
        (tmp_path / "bad.yaml").write_text("a: [")
        Ontology.load(str(tmp_path / "bad.yaml"))
    assert Ontology.identity(["b", "a", "b"]).category_list() == [Category(1, "a"), Category(2, "b")]
