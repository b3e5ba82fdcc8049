"""A SentencePiece model as a ``tokenizer.json``: the same ids for every text, in the form
that transformers' fast tokenizers (and every server built on the `tokenizers` library)
load as is.

SentencePiece encodes in four steps, each with a `tokenizers` counterpart:

1. normalization: the model's precompiled character map (NFKC for our models, none for
   Gemma's), then, when ``remove_extra_whitespaces`` is set, no leading or trailing spaces
   and single spaces inside; ``add_dummy_prefix`` puts a space mark before the text and
   ``escape_whitespaces`` writes every space as '▁';
2. user-defined symbols (our genes, '▁CD74') are cut out of the normalized text first,
   longest match, and never merged: `tokenizers`' added tokens matched on normalized text;
3. BPE merges the pair whose merged piece has the highest score anywhere in the text, or a
   unigram model finds the best segmentation by piece scores;
4. a character the vocabulary lacks becomes its UTF-8 bytes ('<0xE2>').

Merges are not stored in a SentencePiece BPE model: every pair of pieces whose join is a
piece is a merge, ranked by the joined piece's score.

Two texts differ, neither of which a prompt holds: the literal text of a control token
('<s>') is that token here (as in transformers' own SentencePiece conversions), and a
literal '▁' typed right before a user-defined symbol, which SentencePiece matches in the
raw text as well, is read as a space here.
"""

import base64
import json
from typing import Any

from c2s_jax.errors import InputError

# SentencePiece's piece types (sentencepiece_model.proto, ModelProto.SentencePiece.Type).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
# ModelType in TrainerSpec.
UNIGRAM, BPE = 1, 2
SPACE_MARK = "▁"


def sentencepiece_to_tokenizer_json(model_bytes: bytes, source: str) -> dict[str, Any]:
    """The ``tokenizer.json`` content equivalent to a serialized SentencePiece model.

    Args:
      model_bytes: the ``.model`` file's bytes.
      source: the file's name, for errors.

    Returns:
      The JSON object; ``tokenizers.Tokenizer.from_str(json.dumps(...))`` loads it. No
      post-processor: which special tokens frame a text is the family's rule, set by the
      caller.

    Raises:
      InputError: the model uses a SentencePiece feature that has no exact counterpart.
    """
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_bytes)
    trainer, normalizer = proto.trainer_spec, proto.normalizer_spec
    unsupported = {
        "treat_whitespace_as_suffix": trainer.treat_whitespace_as_suffix,
        "a denormalizer": proto.HasField("denormalizer_spec")
        and bool(proto.denormalizer_spec.precompiled_charsmap),
    }
    if trainer.model_type not in (UNIGRAM, BPE):
        unsupported["model_type"] = True
    for name, present in unsupported.items():
        if present:
            raise InputError(
                f"{source}: a SentencePiece model with {name} has no tokenizer.json form"
            )

    pieces = [(p.piece, p.score, p.type) for p in proto.pieces]
    unknown_id = next((i for i, (_, _, kind) in enumerate(pieces) if kind == UNKNOWN), None)
    added = [
        _added_token(i, piece, kind)
        for i, (piece, _, kind) in enumerate(pieces)
        if kind in (CONTROL, USER_DEFINED, UNKNOWN)
    ]
    if trainer.model_type == BPE:
        model = _bpe_model(pieces, unknown_id, trainer.byte_fallback)
    else:
        model = {
            "type": "Unigram",
            "unk_id": unknown_id,
            "vocab": [[piece, score] for piece, score, _ in pieces],
            "byte_fallback": trainer.byte_fallback,
        }
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": _normalizer(normalizer),
        "pre_tokenizer": None,
        "post_processor": None,
        "decoder": _decoder(normalizer, trainer.byte_fallback),
        "model": model,
    }


def _added_token(token_id: int, piece: str, kind: int) -> dict[str, Any]:
    # User-defined symbols are matched in normalized text, where spaces are already '▁';
    # control and unknown pieces are special tokens that never occur in text.
    special = kind != USER_DEFINED
    return {
        "id": token_id,
        "content": piece,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": not special,
        "special": special,
    }


def _bpe_model(
    pieces: list[tuple[str, float, int]], unknown_id: int | None, byte_fallback: bool
) -> dict[str, Any]:
    vocab = {piece: i for i, (piece, _, _) in enumerate(pieces)}
    # Only normal pieces take part in merging; a merge's rank is its result's score
    # (higher first), ties broken by the result's id as SentencePiece's ordering does.
    mergeable = {
        piece: (-score, i) for i, (piece, score, kind) in enumerate(pieces) if kind == NORMAL
    }
    symbols = set(mergeable)
    merges = []
    for joined, rank in mergeable.items():
        for cut in range(1, len(joined)):
            left, right = joined[:cut], joined[cut:]
            if left in symbols and right in symbols:
                merges.append((rank, vocab[left], vocab[right], left, right))
    merges.sort()
    return {
        "type": "BPE",
        "dropout": None,
        "unk_token": pieces[unknown_id][0] if unknown_id is not None else None,
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": True,
        "byte_fallback": byte_fallback,
        "ignore_merges": False,
        "vocab": vocab,
        "merges": [[left, right] for *_, left, right in merges],
    }


def _normalizer(spec) -> dict[str, Any] | None:
    steps: list[dict[str, Any]] = []
    if spec.precompiled_charsmap:
        charsmap = base64.b64encode(spec.precompiled_charsmap).decode("ascii")
        steps.append({"type": "Precompiled", "precompiled_charsmap": charsmap})
    if spec.remove_extra_whitespaces:
        # SentencePiece drops spaces (' ' only, after the character map) at both ends and
        # keeps one of each inner run.
        steps.append(_replace(r"^ +| +$", ""))
        steps.append(_replace(r" {2,}", " "))
    if spec.add_dummy_prefix:
        prefix = SPACE_MARK if spec.escape_whitespaces else " "
        steps.append({"type": "Prepend", "prepend": prefix})
    if spec.escape_whitespaces:
        steps.append({"type": "Replace", "pattern": {"String": " "}, "content": SPACE_MARK})
    return {"type": "Sequence", "normalizers": steps} if steps else None


def _replace(regex: str, content: str) -> dict[str, Any]:
    return {"type": "Replace", "pattern": {"Regex": regex}, "content": content}


def _decoder(spec, byte_fallback: bool) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    if spec.escape_whitespaces:
        steps.append({"type": "Replace", "pattern": {"String": SPACE_MARK}, "content": " "})
    if byte_fallback:
        steps.append({"type": "ByteFallback"})
    steps.append({"type": "Fuse"})
    if spec.add_dummy_prefix:
        # The space the dummy prefix added is not part of the text.
        steps.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
    return {"type": "Sequence", "decoders": steps}


def tokenizer_json_text(model_bytes: bytes, source: str, post_processor: dict | None) -> str:
    """:func:`sentencepiece_to_tokenizer_json` with a post-processor, as file text."""
    content = sentencepiece_to_tokenizer_json(model_bytes, source)
    content["post_processor"] = post_processor
    return json.dumps(content, ensure_ascii=False, indent=1)
