"""The tokenizer side of an HF export: files `AutoTokenizer` loads, and the special-token
ids that `config.json` and `generation_config.json` take from the tokenizer (so that
`generate` on the export stops at the tokenizer's EOS).

A ``tokenizer.json`` (the `tokenizers` library's format, e.g. GPT-NeoX BPE) is copied with
a ``tokenizer_config.json`` naming its special tokens, which transformers' fast tokenizer
reads as is. A SentencePiece model is written both ways: ``tokenizer.model`` as it is, and
a ``tokenizer.json`` that gives the same ids (`sentencepiece_json`), with a post-processor
that opens every text with BOS as our examples do.
"""

import json
import shutil
from pathlib import Path
from typing import Any

from c2s_jax.checkpoints.sentencepiece_json import tokenizer_json_text
from c2s_jax.corpus.tokenizer import FILE_NAMES, Tokenizer
from c2s_jax.errors import InputError


def special_token_ids(tokenizer: Tokenizer) -> dict[str, int | None]:
    """bos/eos/pad ids as HF configs name them; pad is EOS (examples are packed, never
    padded, so only batched generation pads)."""
    return {
        "bos_token_id": tokenizer.bos_id,
        "eos_token_id": tokenizer.eos_id,
        "pad_token_id": tokenizer.eos_id,
    }


def generation_config(tokenizer: Tokenizer) -> dict[str, Any]:
    """``generation_config.json``: the special ids, and greedy decoding by default."""
    return {**special_token_ids(tokenizer), "do_sample": False}


def write_tokenizer_files(tokenizer: Tokenizer, out: Path, max_length: int | None) -> list[str]:
    """Writes the tokenizer into the export folder `out`; returns the files written.

    Args:
      tokenizer: the model's tokenizer.
      out: the export folder (being built).
      max_length: the trained sequence length, for ``model_max_length``.
    """
    shutil.copyfile(tokenizer.path, out / tokenizer.file_name)
    written = [tokenizer.file_name]
    if tokenizer.format == "sentencepiece":
        text = tokenizer_json_text(
            tokenizer.path.read_bytes(), str(tokenizer.path), _bos_post_processor(tokenizer)
        )
        (out / FILE_NAMES["tokenizers"]).write_text(text, encoding="utf-8")
        written.append(FILE_NAMES["tokenizers"])
    tokens = {
        "bos_token": tokenizer.piece(tokenizer.bos_id) if tokenizer.bos_id is not None else None,
        "eos_token": tokenizer.piece(tokenizer.eos_id),
        "pad_token": tokenizer.piece(tokenizer.eos_id),
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **tokens,
        # Our examples open with BOS where the family has one, and never add EOS to a prompt.
        "add_bos_token": tokenizer.bos_id is not None,
        "add_eos_token": False,
        "model_max_length": max_length or 1_000_000_000,
        "clean_up_tokenization_spaces": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    special = {k: v for k, v in tokens.items() if v is not None}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=1))
    return [*written, "tokenizer_config.json", "special_tokens_map.json"]


def _bos_post_processor(tokenizer: Tokenizer) -> dict[str, Any] | None:
    """A tokenizer.json post-processor that opens every text with the family's BOS."""
    if tokenizer.bos_id is None:
        return None
    bos = tokenizer.piece(tokenizer.bos_id)
    text = [{"Sequence": {"id": "A", "type_id": 0}}]
    pair = [*text, {"Sequence": {"id": "B", "type_id": 1}}]
    opener = [{"SpecialToken": {"id": bos, "type_id": 0}}]
    return {
        "type": "TemplateProcessing",
        "single": opener + text,
        "pair": opener + pair,
        "special_tokens": {bos: {"id": bos, "ids": [tokenizer.bos_id], "tokens": [bos]}},
    }


# Our tokenizer family of each HF architecture's special-token rules.
FAMILY_OF_ARCHITECTURE = {"Gemma2ForCausalLM": "gemma", "GPTNeoXForCausalLM": "pythia"}


def checkpoint_tokenizer(hf_dir: Path, hf_config: dict[str, Any]) -> Tokenizer | None:
    """The tokenizer an HF checkpoint folder holds, checked against its config; None when
    it holds none. A SentencePiece ``tokenizer.model`` is preferred where both are present
    (the ``tokenizer.json`` beside it is a conversion of it), so an export read back keeps
    the very file it was trained with.

    Raises:
      InputError: the tokenizer and config.json disagree on the vocabulary or on EOS.
    """
    files = [hf_dir / name for name in ("tokenizer.model", "tokenizer.json")]
    present = [f for f in files if f.exists()]
    if not present:
        return None
    architectures = hf_config.get("architectures") or []
    family = next(
        (FAMILY_OF_ARCHITECTURE[a] for a in architectures if a in FAMILY_OF_ARCHITECTURE), None
    )
    if family is None:
        return None
    tokenizer = Tokenizer(present[0], family)
    if tokenizer.vocab_size > hf_config.get("vocab_size", tokenizer.vocab_size):
        raise InputError(
            f"{present[0]}: {tokenizer.vocab_size} tokens, more than config.json's vocab_size "
            f"{hf_config['vocab_size']}; the tokenizer belongs to another model"
        )
    eos = hf_config.get("eos_token_id")
    eos = eos[0] if isinstance(eos, list) and eos else eos
    if eos is not None and eos != tokenizer.eos_id:
        raise InputError(
            f"{hf_dir}: config.json's eos_token_id is {eos} but {present[0].name} ends text "
            f"with id {tokenizer.eos_id}; fix config.json or the tokenizer"
        )
    return tokenizer
