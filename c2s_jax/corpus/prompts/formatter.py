"""The one place that knows prompt shapes: templates (from templates.json) -> prompt/answer.

A rendered example keeps its cell sentences as gene ids (`GeneRun`) instead of text, so
the tokenizer can turn them into token ids by table lookup; `Rendered.text()` gives the
same example as one string (for tokenizer training and the equivalence check).

Field names follow the released C2S prompts (`num_genes`, `organism`, `cell_type`,
`tissue`) and every answer template ends with a period, so released checkpoints can be
evaluated zero-shot on our prompts.

Words that agree with a number come from `count_phrases` (singular, plural): a template
writes `{genes}` ('1 gene' / '100 genes') and, given `num_cells`, `{the_cells}`,
`{there_are}`, `{their}` and the like, so every wording reads right for one cell or many.
"""

import dataclasses
import json
import string
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from c2s_jax.errors import InputError

TEMPLATES_JSON = Path(__file__).resolve().parent / "templates.json"


@dataclasses.dataclass(frozen=True)
class GeneRun:
    """One cell sentence inside a text.

    Attributes:
      gene_ids: [n] int32 indices into `symbols`, most expressed first.
      symbols: [S] the dataset's gene symbols.
    """

    gene_ids: np.ndarray
    symbols: np.ndarray

    def words(self) -> np.ndarray:
        """[n] the gene symbols, in sentence order."""
        return self.symbols[self.gene_ids]

    def text(self) -> str:
        return " ".join(self.words())


Part = str | GeneRun
FieldValue = str | int | GeneRun | Sequence[GeneRun]


@dataclasses.dataclass(frozen=True)
class Rendered:
    """A prompt and its answer as text pieces and cell sentences, in order.

    The full text is `prompt + " " + answer` (just the answer when the prompt is empty,
    as for plain language modeling); the loss covers the answer only.
    """

    prompt: tuple[Part, ...]
    answer: tuple[Part, ...]

    def prompt_text(self) -> str:
        return _join(self.prompt)

    def answer_text(self) -> str:
        return _join(self.answer)

    def text(self) -> str:
        prompt = self.prompt_text()
        return f"{prompt} {self.answer_text()}" if prompt else self.answer_text()


def _join(parts: Sequence[Part]) -> str:
    return "".join(p if isinstance(p, str) else p.text() for p in parts)


class MissingFieldError(KeyError):
    """A template names a field the example does not provide."""

    def __init__(self, template_name: str, field: str):
        super().__init__(field)
        self.template_name = template_name
        self.field = field


class Templates:
    """Prompt wordings and answer templates of every task.

    Args:
      table: the parsed templates.json: task -> {"prompts": [...], "answer": "..."}, with
        question-answering kinds nested one level deeper, plus the shared `cell_list` and
        `count_phrases` (name -> [singular, plural] with `{count}`) entries.
    """

    def __init__(self, table: Mapping):
        self.table = table

    @classmethod
    def load(cls, path: str | Path = TEMPLATES_JSON) -> "Templates":
        """Reads a templates file (default: the one shipped with the package)."""
        try:
            return cls(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(f"{path}: cannot read prompt templates ({err})") from None

    def entry(self, name: str) -> Mapping:
        """The entry of a task (or 'question_answering/<kind>')."""
        node = self.table
        for key in name.split("/"):
            if key not in node:
                raise InputError(f"prompt templates have no entry '{name}'")
            node = node[key]
        return node

    def fields(self, name: str) -> set[str]:
        """Every field named by the wordings and the answer of `name`."""
        entry = self.entry(name)
        texts = [*entry["prompts"], entry["answer"]]
        return {f for text in texts for _, f, _, _ in string.Formatter().parse(text) if f}

    def phrase(self, name: str, count: int) -> str:
        """A count phrase: phrase('count_phrase', 1) is 'one cell', ('genes', 7) '7 genes'."""
        singular, plural = self.table["count_phrases"][name]
        return (singular if count == 1 else plural).format(count=count)

    def count_fields(self, fields: Mapping[str, FieldValue]) -> dict[str, FieldValue]:
        """`fields` with the phrases that agree with `num_cells` and `num_genes` added
        (values already given are kept)."""
        derived: dict[str, FieldValue] = {}
        if "num_cells" in fields:
            for name in self.table["count_phrases"]:
                if name != "genes":
                    derived[name] = self.phrase(name, int(fields["num_cells"]))
        if "num_genes" in fields:
            derived["genes"] = self.phrase("genes", int(fields["num_genes"]))
        return {**derived, **fields}

    def render(
        self, name: str, fields: Mapping[str, FieldValue], rng: np.random.Generator
    ) -> Rendered:
        """One example of task `name` with a wording drawn by `rng`.

        Args:
          name: task (or 'question_answering/<kind>').
          fields: values of the template fields; `cell_sentence` is a GeneRun and
            `cell_sentences` a sequence of them (rendered as a numbered list);
            `num_cells` and `num_genes` give the phrases that agree with them.
          rng: picks the wording.

        Raises:
          MissingFieldError: a template names a field that `fields` lacks.
        """
        entry = self.entry(name)
        fields = self.count_fields(fields)
        wording = int(rng.integers(len(entry["prompts"])))
        label = f"{name}[{wording}]"
        prompt = self._fill(entry["prompts"][wording], fields, label)
        answer = self._fill(entry["answer"], fields, f"{name}[answer]")
        return Rendered(prompt=prompt, answer=answer)

    def _fill(self, template: str, fields: Mapping[str, FieldValue], label: str):
        parts: list[Part] = []
        for literal, field, _, _ in string.Formatter().parse(template):
            _append(parts, literal)
            if field is None:
                continue
            if field not in fields:
                raise MissingFieldError(label, field)
            value = fields[field]
            if isinstance(value, GeneRun):
                parts.append(value)
            elif isinstance(value, str | int | np.integer):
                _append(parts, str(value))
            else:
                parts.extend(self._cell_list(value))
        return tuple(parts)

    def _cell_list(self, runs: Sequence[GeneRun]) -> list[Part]:
        cell_list = self.table["cell_list"]
        parts: list[Part] = []
        for index, run in enumerate(runs):
            if index:
                _append(parts, cell_list["separator"])
            item = self._fill(cell_list["item"], {"index": index + 1, "cell_sentence": run}, "")
            for part in item:
                if isinstance(part, str):
                    _append(parts, part)
                else:
                    parts.append(part)
        return parts


def _append(parts: list[Part], text: str) -> None:
    """Appends text, merging it into a preceding text piece."""
    if not text:
        return
    if parts and isinstance(parts[-1], str):
        parts[-1] += text
    else:
        parts.append(text)
