"""The tokenizer side of an HF export: files `AutoTokenizer` loads, and the special-token
ids that `config.json` and `generation_config.json` take from the tokenizer (so that
`generate` on the export stops at the tokenizer's EOS).

A ``tokenizer.json`` (the `tokenizers` library's format, e.g. GPT-NeoX BPE) is copied with
a ``tokenizer_config.json`` naming its special tokens, which transformers' fast tokenizer
reads as is. A SentencePiece model has no faithful ``tokenizer.json`` form here yet: its
``tokenizer.model`` is copied for `sentencepiece` users, and the model card says so.
"""

import json
import shutil
from pathlib import Path
from typing import Any

from c2s_jax.data.tokenizer import Tokenizer


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
    if tokenizer.format != "tokenizers":
        return [tokenizer.file_name]
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
    return [tokenizer.file_name, "tokenizer_config.json", "special_tokens_map.json"]
