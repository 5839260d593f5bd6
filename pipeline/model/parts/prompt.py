"""HyperSeg's released prompt templates, their tokenisation, and a small offline tokenizer for the tiny preset.

The prompt is one conv_phi_v0 turn whose placeholders become negative ids; the sequence assembly later replaces
each with a block of embeddings (model.md §1.5). Tasks, by name:

- ``"referring"``: RefCOCO-style referring segmentation of an image (``RefCOCO_dataset_test``);
- ``"reasoning"``: ReasonSeg, the same image wording with "Reasoning Segmentation" (``Reason_dataset_test``);
- ``"video"``: one frame of a ReVOS / ReasonVOS video (``Reason_VOS_dataset_test``).

Source: congvvc/HyperSeg@5cfcf52:hyperseg/eval/eval_dataset/eval_datasets.py (templates, instruction clean-up,
``tokenizer_special_tokens``), hyperseg/model/mipha/conversation.py (``conv_phi_v0``), hyperseg/utils/constants.py
(placeholder ids). The strings are checked against golden-tiny's ``prompt.txt`` files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

# Placeholder ids, as in the released constants.
IMAGE_TOKEN_INDEX = -200
SEG_TOKEN_INDEX = -201
CLS_TOKEN_INDEX = -202
REGION_TOKEN_INDEX = -203
REFER_TOKEN_INDEX = -204
TEMPORAL_TOKEN_INDEX = -205

PLACEHOLDER_IDS = {
    "<image>": IMAGE_TOKEN_INDEX,
    "<seg>": SEG_TOKEN_INDEX,
    "<cls>": CLS_TOKEN_INDEX,
    "<region>": REGION_TOKEN_INDEX,
    "<refer>": REFER_TOKEN_INDEX,
    "<temporal>": TEMPORAL_TOKEN_INDEX,
}
# ``<gt>`` is not a placeholder embedding: it stands for the answer's token ids (here the single [SEG] id).
GT_PLACEHOLDER = "<gt>"
SEG_TOKEN = "[SEG]"
END_OF_TEXT = "<|endoftext|>"
_SPLIT = re.compile("(" + "|".join(re.escape(p) for p in (*PLACEHOLDER_IDS, GT_PLACEHOLDER)) + ")")

# conv_phi_v0: style TWO, sep " ", sep2 "<|endoftext|>", roles USER / ASSISTANT.
SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
_IMAGE_HUMAN = (
    "This is an image <image>\n<temporal>\n, Please doing {task} Segmentation according to the following "
    "instruction:\n<refer>"
)
HUMAN_TURNS = {
    "referring": _IMAGE_HUMAN.format(task="Referring"),
    "reasoning": _IMAGE_HUMAN.format(task="Reasoning"),
    "video": (
        "This is a frame <image>\n<temporal>\n, Please doing Reasoning Segmentation according to the following "
        "instruction.\nThis is all the instruction: <refer>\n"
    ),
}
# InstructSeg (congvvc/InstructSeg@0134314:instructseg/datasets/InstructSegDatasets.py; model.md §1.10):
# <temporal> before <image>, a lower-case "please" for images. Its ReasonSeg wording is not in the references; it
# is taken to differ from RES only in the task word, as HyperSeg's does.
_INSTRUCTSEG_IMAGE_HUMAN = (
    "This is an image <temporal>\n<image>\n, please doing {task} Segmentation according to the following "
    "instruction:\n<refer>"
)
INSTRUCTSEG_HUMAN_TURNS = {
    "referring": _INSTRUCTSEG_IMAGE_HUMAN.format(task="Referring"),
    "reasoning": _INSTRUCTSEG_IMAGE_HUMAN.format(task="Reasoning"),
    "video": (
        "There are reference frames and key frame <temporal>\n<image>\n. Please doing Reasoning Segmentation "
        "according to the following instruction.\nThis is all the instruction: <refer>\n"
    ),
}
FAMILY_HUMAN_TURNS = {"HyperSeg": HUMAN_TURNS, "InstructSeg": INSTRUCTSEG_HUMAN_TURNS}
ANSWER = "\nSure, the segmentation result is <gt><seg>"
TASKS = tuple(HUMAN_TURNS)

TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model")


def _check_task(task: str) -> None:
    if task not in HUMAN_TURNS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def build_prompt(task: str, family: str = "HyperSeg") -> str:
    """The full prompt string for ``task`` ("referring", "reasoning" or "video"), placeholders included.

    ``family`` is the model's (``HyperSeg`` or ``InstructSeg``): the two releases word and order the human turn
    differently.

    ``SYSTEM + " USER: " + human + " ASSISTANT: " + answer + "<|endoftext|>"``; the instruction is not in the
    string (it fills ``<refer>`` as embeddings), so the prompt is the same for every sample of a task.
    """
    _check_task(task)
    if family not in FAMILY_HUMAN_TURNS:
        raise ValueError(f"unknown model family {family!r}; expected one of {sorted(FAMILY_HUMAN_TURNS)}")
    return f"{SYSTEM} USER: {FAMILY_HUMAN_TURNS[family][task]} ASSISTANT: {ANSWER}{END_OF_TEXT}"


def format_instruction(task: str, sentences: str | Sequence[str]) -> str:
    """The instruction text as the released test datasets build it from the annotation sentences.

    - referring: every sentence followed by a full stop, joined by spaces (``"s1. s2."``);
    - reasoning: the first sentence, stripped;
    - video: the sentences joined by spaces with ``"(s)"`` removed; no full stop is added.
    """
    _check_task(task)
    if isinstance(sentences, str):
        sentences = [sentences]
    if not sentences:
        raise ValueError("no instruction sentences given")
    if any(not sentence.strip() for sentence in sentences):
        raise ValueError(f"instruction sentences must not be empty, got {list(sentences)!r}")
    if task == "referring":
        return "".join(f" {sentence}." for sentence in sentences).strip()
    if task == "reasoning":
        return sentences[0].strip()
    return "".join(f" {sentence}" for sentence in sentences).strip().replace("(s)", "")


def seg_token_id(tokenizer, seg_token: str = SEG_TOKEN) -> int:
    """The single id of ``seg_token``; raises ValueError if the tokenizer splits it (no added [SEG] token)."""
    ids = tokenizer.encode(seg_token, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"tokenizer has no {seg_token} token: it encodes to {len(ids)} ids {ids}")
    return ids[0]


def tokenize_prompt(tokenizer, prompt: str, seg_token: str = SEG_TOKEN) -> list[int]:
    """Token ids of a prompt: text chunks encoded on their own, placeholders as negative ids.

    The prompt is split at the placeholders; each text chunk is encoded with ``add_special_tokens=False``
    (``<|endoftext|>`` is an added token, so it still becomes its id); ``<gt>`` becomes the [SEG] id.
    """
    seg_id = seg_token_id(tokenizer, seg_token)
    ids: list[int] = []
    for chunk in _SPLIT.split(prompt):
        if chunk == GT_PLACEHOLDER:
            ids.append(seg_id)
        elif chunk in PLACEHOLDER_IDS:
            ids.append(PLACEHOLDER_IDS[chunk])
        elif chunk:
            ids.extend(tokenizer.encode(chunk, add_special_tokens=False))
    return ids


def refer_ids(tokenizer, instruction: str, seg_token: str = SEG_TOKEN) -> list[int]:
    """``token_refer_id``: the instruction's ids (used verbatim, see ``format_instruction``) followed by [SEG]."""
    if not instruction.strip():
        raise ValueError("instruction is empty")
    return tokenizer.encode(instruction, add_special_tokens=False) + [seg_token_id(tokenizer, seg_token)]


def load_tokenizer(directory: str | Path, seg_token: str = SEG_TOKEN):
    """A checkpoint's tokenizer from local files only (never remote code), checked to hold ``seg_token``."""
    from transformers import AutoTokenizer, PreTrainedConfig

    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"tokenizer directory {directory} does not exist")
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise ValueError(f"{directory} holds no tokenizer files (looked for {', '.join(TOKENIZER_FILES)})")
    options = {}
    settings = directory / "tokenizer_config.json"
    if settings.is_file() and json.loads(settings.read_text()).get("tokenizer_class"):
        # The class is named, so the model config need not be read: AutoTokenizer would parse config.json, whose
        # model_type (mipha_phi) transformers does not know, and warn on every load that it may not fit.
        options["config"] = PreTrainedConfig()
    tokenizer = AutoTokenizer.from_pretrained(
        str(directory), local_files_only=True, trust_remote_code=False, **options
    )
    seg_token_id(tokenizer, seg_token)
    return tokenizer


# Training text of the tiny tokenizer: the template wording plus a few instructions, so that every template
# tokenizes into reasonably few ids. Fixed text and a deterministic trainer make the vocabulary reproducible.
_TINY_CORPUS = (
    SYSTEM,
    *HUMAN_TURNS.values(),
    ANSWER,
    "the red box on the left.",
    "the rocket on the launch pad",
    "the person on the right holding a blue umbrella.",
    "which object in the picture can be used to cut paper?",
    "a small dog running across the green grass",
    "the car that is parked next to the yellow bar.",
    "segment the animal that is most likely to swim.",
    "the man in the white shirt who is walking away from the camera",
)


def _added_token(content: str, *, normalized: bool, special: bool) -> dict:
    """One ``added_tokens_decoder`` entry of ``tokenizer_config.json``."""
    flags = {"lstrip": False, "normalized": normalized, "rstrip": False, "single_word": False, "special": special}
    return {"content": content, **flags}


def build_tiny_tokenizer(
    directory: str | Path, vocab_size: int = 384, seg_token: str = SEG_TOKEN, corpus: Sequence[str] = ()
) -> Path:
    """Train and save a small byte-level BPE tokenizer laid out like the golden tiny checkpoint's.

    ``corpus`` adds training text to the built-in one (the templates and a few instructions), e.g. the phrases of
    the synthetic world, so that their words become single ids.

    ``<|endoftext|>`` is id 0 and serves as bos/eos/pad/unk; the 256 byte symbols follow, then the merges;
    ``seg_token`` is an added (non-special) token right after the trained ids (id 384 by default, as in the golden
    tokenizer; the built-in corpus runs out of merges at about 547 ids, so larger ``vocab_size`` values give fewer).
    No network access.

    Returns:
        The directory, loadable with ``load_tokenizer`` / ``AutoTokenizer.from_pretrained``.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size <= len(alphabet) + 1:
        raise ValueError(f"vocab_size must exceed {len(alphabet) + 1} (end-of-text + byte symbols), got {vocab_size}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[END_OF_TEXT], initial_alphabet=alphabet, show_progress=False
    )
    tokenizer.train_from_iterator([*_TINY_CORPUS, *corpus], trainer=trainer)
    tokenizer.add_tokens([AddedToken(seg_token, normalized=True, special=False)])
    seg_id = tokenizer.token_to_id(seg_token)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    tokenizer.model.save(str(directory))  # vocab.json + merges.txt, as in the released layout
    special = {name: END_OF_TEXT for name in ("bos_token", "eos_token", "pad_token", "unk_token")}
    config = {
        "add_prefix_space": False,
        "added_tokens_decoder": {
            "0": _added_token(END_OF_TEXT, normalized=False, special=True),
            str(seg_id): _added_token(seg_token, normalized=True, special=False),
        },
        **special,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 2048,
        "tokenizer_class": "GPT2Tokenizer",
    }
    files = {
        "tokenizer_config.json": config,
        "special_tokens_map.json": special,
        "added_tokens.json": {seg_token: seg_id},
    }
    for name, content in files.items():
        (directory / name).write_text(json.dumps(content, indent=2) + "\n")
    return directory
