"""Tokenizers: SentencePiece ``.model`` files and ``tokenizer.json`` files (the format of
the `tokenizers` library that transformers uses, e.g. Pythia's GPT-NeoX byte-level BPE),
loaded by content; and the training of a gene-aware SentencePiece model.

Cell sentences become token ids by table lookup: each gene symbol is tokenized once
(as it appears mid-sentence, after a space) and a sentence is the concatenation of its
genes' rows. Neither tokenizer joins pieces across a space (SentencePiece by design,
GPT-NeoX's pre-tokenizer splits there), so the table equals tokenizing the text whenever
segment boundaries fall on spaces; `ExampleEncoder` checks that on a sample of examples
and falls back to text tokenization when it does not hold.

Special tokens follow the model family: Gemma (and our own tokenizer) puts BOS at the
start of every example and EOS at its end; GPT-NeoX (Pythia) only ends examples with EOS.
Examples are packed later, so a BOS only ever opens an example, never sits inside one.
"""

import dataclasses
import hashlib
import io
import json
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from c2s_jax.corpus.prompts.formatter import GeneRun, Part, Rendered
from c2s_jax.errors import InputError
from c2s_jax.storage.atomic import atomic_path

FAMILIES = ("gemma", "pythia", "c2s")
# SentencePiece marks a preceding space with this character.
SPACE_MARK = "▁"
# Byte fallback adds one piece per byte value, so no text is ever out of vocabulary.
BYTE_PIECES = 256
# The file name a tokenizer keeps in a model bundle or an HF export, by format.
FILE_NAMES = {"sentencepiece": "tokenizer.model", "tokenizers": "tokenizer.json"}
# Special-token spellings of each family in a tokenizer.json, in order of preference.
_SPECIAL_NAMES = {
    "bos": {"gemma": ("<bos>",), "c2s": ("<s>",), "pythia": ()},
    "eos": {"gemma": ("<eos>",), "c2s": ("</s>",), "pythia": ("<|endoftext|>", "</s>")},
}


class Tokenizer:
    """A tokenizer file and the special-token rules of its family.

    Args:
      path: a SentencePiece .model file or a `tokenizers` tokenizer.json (recognised by
        content).
      family: 'gemma', 'pythia' or 'c2s'.
    """

    def __init__(self, path: str | Path, family: str):
        if family not in FAMILIES:
            raise InputError(f"tokenizer family must be one of {FAMILIES}, got '{family}'")
        self.path = Path(path)
        try:
            content = self.path.read_bytes()
        except OSError as err:
            raise InputError(f"{path}: cannot read the tokenizer ({err})") from None
        self.sha256 = hashlib.sha256(content).hexdigest()
        self.family = family
        if content.lstrip()[:1] == b"{":
            self.format = "tokenizers"
            self._backend = _TokenizersJson(self.path, content, family)
        else:
            self.format = "sentencepiece"
            self._backend = _SentencePiece(self.path, content, family)
        self.bos_id, self.eos_id = self._backend.bos_id, self._backend.eos_id
        for name, token in (("BOS", self.bos_id), ("EOS", self.eos_id)):
            if token is not None and token < 0:
                raise InputError(f"{path}: the {family} family needs a {name} token; it has none")

    @property
    def file_name(self) -> str:
        """The name this tokenizer's file takes in a bundle or an HF export."""
        return FILE_NAMES[self.format]

    @property
    def vocab_size(self) -> int:
        """Pieces, special and added tokens included."""
        return self._backend.vocab_size

    @property
    def unknown_id(self) -> int | None:
        """The unknown piece's id, or None where every byte sequence has pieces."""
        return self._backend.unknown_id

    def encode(self, text: str) -> np.ndarray:
        """[n] int32 token ids of `text` (no special tokens)."""
        return np.asarray(self._backend.encode(text), np.int32)

    def decode(self, ids: Sequence[int]) -> str:
        """The text of `ids`; special tokens (BOS, EOS) give no text."""
        return self._backend.decode([int(i) for i in ids])

    def piece(self, token: int) -> str:
        """The vocabulary entry of `token` as the file spells it ('▁CD3D', 'ĠCD3D', '.')."""
        return self._backend.piece(int(token))

    def describe(self) -> dict:
        """Path, checksum, format, family, size and special ids: what metadata records."""
        return {
            "path": str(self.path.resolve()),
            "sha256": self.sha256,
            "format": self.format,
            "family": self.family,
            "vocab_size": self.vocab_size,
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
        }


class _SentencePiece:
    def __init__(self, path: Path, content: bytes, family: str):
        import sentencepiece

        self.processor = sentencepiece.SentencePieceProcessor()
        try:
            self.processor.LoadFromSerializedProto(content)
        except RuntimeError as err:
            raise InputError(
                f"{path}: neither a SentencePiece model nor a tokenizer.json ({err})"
            ) from None
        self.bos_id = self.processor.bos_id() if family in ("gemma", "c2s") else None
        self.eos_id = self.processor.eos_id()
        self.vocab_size = self.processor.get_piece_size()
        unknown = self.processor.unk_id()
        self.unknown_id = unknown if unknown >= 0 else None

    def encode(self, text: str) -> list[int]:
        return self.processor.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.processor.decode(ids)

    def piece(self, token: int) -> str:
        return self.processor.id_to_piece(token)


class _TokenizersJson:
    def __init__(self, path: Path, content: bytes, family: str):
        import tokenizers

        try:
            self.tokenizer = tokenizers.Tokenizer.from_str(content.decode("utf-8"))
        except Exception as err:  # the library raises a bare Exception for a bad file
            raise InputError(
                f"{path}: not a tokenizer.json the tokenizers library reads ({err})"
            ) from None
        self.vocab_size = self.tokenizer.get_vocab_size(with_added_tokens=True)
        self.bos_id = self._special(path, family, "bos")
        self.eos_id = self._special(path, family, "eos")
        model = json.loads(content).get("model", {})
        unknown = model.get("unk_token")
        self.unknown_id = self.tokenizer.token_to_id(unknown) if unknown else None

    def _special(self, path: Path, family: str, role: str) -> int | None:
        names = _SPECIAL_NAMES[role][family]
        if not names:
            return None
        for name in names:
            token = self.tokenizer.token_to_id(name)
            if token is not None:
                return token
        raise InputError(
            f"{path}: the {family} family needs a {role.upper()} token ({' or '.join(names)}); "
            "this tokenizer.json has none"
        )

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def piece(self, token: int) -> str:
        return self.tokenizer.id_to_token(token) or ""


@dataclasses.dataclass(frozen=True)
class GeneTable:
    """Token ids of every gene symbol as it appears after a space.

    Attributes:
      ids: [total] int32 concatenated token ids.
      starts: [S] int64 where each symbol's ids begin; lengths: [S] int64 how many.
    """

    ids: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray

    @classmethod
    def build(cls, tokenizer: Tokenizer, symbols: np.ndarray) -> "GeneTable":
        rows = [tokenizer.encode(f" {s}") for s in symbols]
        lengths = np.array([len(r) for r in rows], np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        ids = np.concatenate(rows) if rows else np.zeros(0, np.int32)
        return cls(ids.astype(np.int32), starts, lengths)

    def lookup(self, gene_ids: np.ndarray) -> np.ndarray:
        """[sum of lengths] token ids of the space-joined genes (each with its space)."""
        lengths = self.lengths[gene_ids]
        offsets = np.repeat(self.starts[gene_ids] - np.cumsum(lengths) + lengths, lengths)
        return self.ids[offsets + np.arange(offsets.size)]


@dataclasses.dataclass(frozen=True)
class EncodedExample:
    """Token ids of one example with its loss mask.

    Attributes:
      tokens: [L] int32, special tokens included.
      loss_mask: [L] uint8, 1 on answer tokens (and the closing EOS), 0 on BOS and prompt.
      prompt_gene_tokens: tokens that prompt cell sentences take (what truncation trims).
    """

    tokens: np.ndarray
    loss_mask: np.ndarray
    prompt_gene_tokens: int


class ExampleEncoder:
    """Rendered examples -> token ids and loss masks.

    Args:
      tokenizer: the tokenizer.
      pre_tokenized: look cell sentences up in gene tables instead of tokenizing text.
    """

    def __init__(self, tokenizer: Tokenizer, pre_tokenized: bool = True):
        self.tokenizer = tokenizer
        self.pre_tokenized = pre_tokenized
        self._tables: dict[int, tuple[np.ndarray, GeneTable]] = {}

    def table(self, symbols: np.ndarray) -> GeneTable:
        """The gene table of a symbol array (built once per array)."""
        key = id(symbols)
        if key not in self._tables:
            # The array is kept alongside so its id cannot be reused by another one.
            self._tables[key] = (symbols, GeneTable.build(self.tokenizer, symbols))
        return self._tables[key][1]

    def encode(self, rendered: Rendered) -> EncodedExample:
        """Tokens and loss mask of an example: [BOS] prompt answer EOS."""
        if self.pre_tokenized:
            prompt = self._encode_parts(rendered.prompt, after_space=False)
            answer = self._encode_parts(rendered.answer, after_space=bool(rendered.prompt))
        else:
            prompt_text = rendered.prompt_text()
            prompt = self.tokenizer.encode(prompt_text) if prompt_text else np.zeros(0, np.int32)
            answer = self.tokenizer.encode((" " if prompt_text else "") + rendered.answer_text())
        head = [] if self.tokenizer.bos_id is None else [self.tokenizer.bos_id]
        tokens = np.concatenate([head, prompt, answer, [self.tokenizer.eos_id]]).astype(np.int32)
        loss_mask = np.zeros(len(tokens), np.uint8)
        loss_mask[len(head) + len(prompt) :] = 1
        gene_tokens = sum(
            int(self.table(p.symbols).lengths[p.gene_ids].sum())
            for p in rendered.prompt
            if isinstance(p, GeneRun)
        )
        return EncodedExample(tokens, loss_mask, gene_tokens)

    def matches_text(self, rendered: Rendered) -> bool:
        """Whether table lookup gives exactly the tokens of the example's full text."""
        prompt = self._encode_parts(rendered.prompt, after_space=False)
        answer = self._encode_parts(rendered.answer, after_space=bool(rendered.prompt))
        return np.array_equal(
            np.concatenate([prompt, answer]), self.tokenizer.encode(rendered.text())
        )

    def verify_tables(self, sample: Sequence[Rendered]) -> int:
        """Checks table lookup against text tokenization on `sample`; falls back on a miss.

        Returns:
          The number of sampled examples whose tokens differ. When any does, a warning
          names the tokenizer and this encoder tokenizes text from then on.
        """
        if not self.pre_tokenized:
            return 0
        mismatches = sum(not self.matches_text(rendered) for rendered in sample)
        if mismatches:
            warnings.warn(
                f"gene-table tokenization differs from text tokenization on {mismatches} of "
                f"{len(sample)} sampled examples with {self.tokenizer.path}; tokenizing text "
                "instead (slower, same tokens as the tokenizer gives)",
                stacklevel=2,
            )
            self.pre_tokenized = False
        return mismatches

    def _encode_parts(self, parts: Sequence[Part], after_space: bool) -> np.ndarray:
        pieces = []
        for segment in _space_segments(parts, after_space):
            if isinstance(segment, str):
                pieces.append(self.tokenizer.encode(segment))
            else:
                pieces.append(self.table(segment.symbols).lookup(segment.gene_ids))
        return np.concatenate(pieces).astype(np.int32) if pieces else np.zeros(0, np.int32)


def _space_segments(parts: Sequence[Part], after_space: bool) -> list[str | GeneRun]:
    """Re-cuts parts so that every segment after the first begins at a space.

    A gene run covers ' G1 G2 ...' (each gene with its preceding space). A gene glued to
    neighbouring text without a space (the last gene before its period, say) moves into
    that text segment, which is then tokenized as text.
    """
    segments: list[str | GeneRun] = []
    pending = " " if after_space else ""
    for part in parts:
        if isinstance(part, str):
            last = segments[-1] if segments else None
            if not pending and isinstance(last, GeneRun) and not part.startswith(" "):
                segments.pop()
                if len(last.gene_ids) > 1:
                    segments.append(GeneRun(last.gene_ids[:-1], last.symbols))
                pending = f" {last.symbols[last.gene_ids[-1]]}"
            pending += part
            continue
        gene_ids = part.gene_ids
        if len(gene_ids) == 0:
            continue
        if pending.endswith(" "):
            pending = pending[:-1]
        else:
            pending += str(part.symbols[gene_ids[0]])
            gene_ids = gene_ids[1:]
        if len(gene_ids) == 0:
            continue
        if pending:
            segments.append(pending)
        segments.append(GeneRun(gene_ids, part.symbols))
        pending = ""
    if pending:
        segments.append(pending)
    return segments


def train_tokenizer(
    texts: Iterable[str],
    model_path: str | Path,
    vocab_size: int,
    gene_symbols: Sequence[str] = (),
    model_type: str = "bpe",
) -> Path:
    """Trains a SentencePiece model on `texts` and writes it atomically.

    Args:
      texts: training text, one example per item.
      model_path: the .model file to write.
      vocab_size: learned pieces; the model also holds one piece per gene symbol and the
        256 byte pieces (at least; SentencePiece may add pieces for rare characters).
      gene_symbols: each becomes one piece, space mark included, so a gene after a space
        is exactly one token ('▁CD74'). Empty for a generic tokenizer.
      model_type: 'bpe' or 'unigram'.

    Returns:
      The written path. Training reads the texts in order in one thread, so the same
      texts give the same model bytes.
    """
    import sentencepiece

    user_symbols = sorted({f"{SPACE_MARK}{s}" for s in gene_symbols})
    model = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(list(texts)),
            model_writer=model,
            vocab_size=vocab_size + len(user_symbols) + BYTE_PIECES,
            model_type=model_type,
            user_defined_symbols=user_symbols,
            byte_fallback=True,
            hard_vocab_limit=False,
            shuffle_input_sentence=False,
            input_sentence_size=0,
            max_sentence_length=1 << 20,
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as err:
        raise InputError(f"cannot train a tokenizer for {model_path}: {err}") from None
    with atomic_path(model_path) as tmp:
        tmp.write_bytes(model.getvalue())
    return Path(model_path)


def token_efficiency(tokenizer: Tokenizer, texts: Sequence[str], symbols: Sequence[str]) -> dict:
    """Tokens per gene (over `symbols`, mid-sentence) and per example (over `texts`)."""
    per_gene = [len(tokenizer.encode(f" {s}")) for s in symbols]
    per_example = [len(tokenizer.encode(t)) for t in texts]
    return {
        "tokens_per_gene": float(np.mean(per_gene)) if per_gene else float("nan"),
        "tokens_per_example": float(np.mean(per_example)) if per_example else float("nan"),
    }
