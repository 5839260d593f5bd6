"""Prompt templates and tokenisation against the golden ids, and the offline tiny tokenizer."""

import filecmp
from pathlib import Path

import pytest
from safetensors.torch import load_file
from transformers import AutoTokenizer

from pipeline.model.parts.prompt import (
    IMAGE_TOKEN_INDEX,
    REFER_TOKEN_INDEX,
    SEG_TOKEN_INDEX,
    TASKS,
    TEMPORAL_TOKEN_INDEX,
    build_prompt,
    build_tiny_tokenizer,
    format_instruction,
    load_tokenizer,
    refer_ids,
    seg_token_id,
    tokenize_prompt,
)

from ..reference import GOLDEN

# (task, golden case directory, annotation sentences as the dataset would hold them, or the file holding one)
CASES = {
    "image": ("referring", GOLDEN / "reference", ["the red box on the left"]),
    "video": ("video", GOLDEN / "video", GOLDEN / "video" / "instruction.txt"),
}


@pytest.fixture(scope="module")
def golden_tokenizer():
    return load_tokenizer(GOLDEN / "checkpoint")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tiny_tokenizer"))


@pytest.mark.parametrize("case", CASES)
def test_prompt_string_is_golden(case):
    task, directory, _ = CASES[case]
    assert build_prompt(task) == (directory / "prompt.txt").read_text()


def test_reasoning_prompt_differs_only_in_the_task_word():
    assert build_prompt("reasoning") == build_prompt("referring").replace("Referring", "Reasoning")
    assert "Reasoning Segmentation according to the following instruction:\n<refer>" in build_prompt("reasoning")


@pytest.mark.parametrize("case", CASES)
def test_input_ids_and_refer_ids_are_golden(case, golden_tokenizer):
    task, directory, sentences = CASES[case]
    inputs = load_file(directory / "inputs.safetensors")
    ids = tokenize_prompt(golden_tokenizer, build_prompt(task))
    assert ids == inputs["input_ids"][0].tolist()
    # The collator's side tensors follow from the ids: pad = eos = 0 is masked, <refer> flagged.
    assert [i != golden_tokenizer.pad_token_id for i in ids] == inputs["attention_mask"][0].tolist()
    assert [int(i == REFER_TOKEN_INDEX) for i in ids] == inputs["refer_embedding_indices"][0].tolist()
    if isinstance(sentences, Path):
        sentences = [sentences.read_text()]
    instruction = format_instruction(task, sentences)
    assert refer_ids(golden_tokenizer, instruction) == inputs["token_refer_id"].tolist()


def test_instruction_clean_up_follows_the_release():
    assert format_instruction("referring", ["the red box on the left"]) == "the red box on the left."
    assert format_instruction("referring", ["a cat", " a dog "]) == "a cat.  a dog ."
    assert format_instruction("reasoning", ["  why is it red?  ", "ignored"]) == "why is it red?"
    assert format_instruction("video", "the car(s) turning left\n") == "the car turning left"
    with pytest.raises(ValueError, match="no instruction"):
        format_instruction("video", [])


def test_placeholders_and_seg_id(golden_tokenizer):
    ids = tokenize_prompt(golden_tokenizer, build_prompt("video"))
    assert seg_token_id(golden_tokenizer) == 384
    for placeholder in (IMAGE_TOKEN_INDEX, TEMPORAL_TOKEN_INDEX, REFER_TOKEN_INDEX, SEG_TOKEN_INDEX):
        assert ids.count(placeholder) == 1
    assert ids[-3:] == [384, SEG_TOKEN_INDEX, 0]


def test_bad_task_and_empty_instruction(golden_tokenizer):
    with pytest.raises(ValueError, match="unknown task"):
        build_prompt("panoptic")
    with pytest.raises(ValueError, match="empty"):
        refer_ids(golden_tokenizer, "  ")


def test_tiny_tokenizer_loads_and_tokenizes_every_template(tiny_dir):
    for name in ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "added_tokens.json"):
        assert (tiny_dir / name).is_file()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_dir), local_files_only=True)
    assert len(tokenizer) == 385
    assert tokenizer.bos_token_id == tokenizer.eos_token_id == tokenizer.pad_token_id == tokenizer.unk_token_id == 0
    seg = seg_token_id(tokenizer)
    assert seg == 384
    for task in TASKS:
        prompt = build_prompt(task)
        ids = tokenize_prompt(tokenizer, prompt)
        assert ids[-3:] == [seg, SEG_TOKEN_INDEX, 0]
        assert all(0 <= i < len(tokenizer) for i in ids if i >= 0)
        text = prompt.replace("<gt>", "[SEG]")
        for placeholder in ("<image>", "<temporal>", "<refer>", "<seg>"):
            text = text.replace(placeholder, "")
        assert tokenizer.decode([i for i in ids if i >= 0]) == text
    assert refer_ids(tokenizer, "the dog on the sofa")[-1] == seg


def test_tiny_tokenizer_is_reproducible(tiny_dir, tmp_path):
    again = build_tiny_tokenizer(tmp_path / "again")
    for name in ("tokenizer.json", "vocab.json", "merges.txt"):
        assert filecmp.cmp(tiny_dir / name, again / name, shallow=False)


def test_load_tokenizer_errors(tmp_path, tiny_dir):
    with pytest.raises(ValueError, match="does not exist"):
        load_tokenizer(tmp_path / "missing")
    with pytest.raises(ValueError, match="no tokenizer files"):
        load_tokenizer(tmp_path)
    with pytest.raises(ValueError, match=r"no \[MASK\] token"):
        load_tokenizer(tiny_dir, seg_token="[MASK]")
