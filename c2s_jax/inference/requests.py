"""Generation requests read, not wrapped: "7 human kidney cells", "CD8+ T cells from
pancreas", "a fibroblast in lung after IL-6 stimulation" become a count and the corpus's
own condition labels (cell type, tissue, organism, disease, perturbation), matched
case-insensitively against the labels the model's corpus holds.

Matching takes the longest label first, so "CD4 Memory T" wins over "T". A label also
matches in the plural ("monocytes" for "Monocyte", "T cells" for "T cell") and organisms
by their common names ("human", "mouse"). Words that join conditions ("from", "in",
"after", "cells", ...) are skipped; any other word left over is named, with the closest
labels, so nothing a user asked for is silently dropped.
"""

import dataclasses
import difflib
import re
from collections.abc import Mapping, Sequence

from c2s_jax.errors import InputError

# The order the corpus builder writes conditions in (corpus_cells.CONDITION_FIELDS).
FIELDS = ("cell_type", "tissue", "organism", "disease", "perturbation")
NUMBER_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "dozen": 12,
}  # fmt: skip
ORGANISM_NAMES = {
    "homo sapiens": ("human", "humans"),
    "mus musculus": ("mouse", "mice", "murine"),
    "rattus norvegicus": ("rat", "rats"),
    "danio rerio": ("zebrafish",),
    "macaca mulatta": ("macaque", "rhesus macaque"),
}
# Words that only join or frame conditions.
FILLER = {
    "cell", "cells", "from", "in", "of", "the", "with", "under", "after", "type", "types",
    "tissue", "and", "treated", "treatment", "stimulation", "stimulated", "by", "at",
    "perturbation", "perturbed", "exposed", "to", "generate", "make", "sample", "some",
    "please", "for", "me", "give", "like", "cytokine", "drug", "knockout", "upon", "a", "an",
    ",", ".",
}  # fmt: skip
_TOKEN = re.compile(r"[^\s,;.]+(?:\.[^\s,;.]+)*|[,;.]")


@dataclasses.dataclass(frozen=True)
class CellRequest:
    """What a request asks for.

    Attributes:
      text: the request as given.
      count: cells asked for (None when the request names no number).
      conditions: field -> the corpus label it matched, e.g. {'tissue': 'kidney'}.
    """

    text: str
    count: int | None
    conditions: dict[str, str]


def parse_request(text: str, labels: Mapping[str, Sequence[str]]) -> CellRequest:
    """Reads a free-text request against the corpus's labels.

    Args:
      text: e.g. "7 human kidney cells".
      labels: field -> the labels of that field in the corpus (corpus.json's
        ``datasets.*.labels``, merged over datasets).

    Raises:
      InputError: a word matched no label (the closest labels are suggested), or the
        request names nothing at all.
    """
    spelled = _TOKEN.findall(text)
    tokens = [t.lower() for t in spelled]
    count = None
    if tokens and (tokens[0].isdigit() or tokens[0] in NUMBER_WORDS):
        count = int(tokens[0]) if tokens[0].isdigit() else NUMBER_WORDS[tokens[0]]
        tokens, spelled = tokens[1:], spelled[1:]
        if count < 1:
            raise InputError(f"request '{text}': asks for {count} cells; ask for at least one")
    phrases = _phrases(labels)
    conditions: dict[str, str] = {}
    # Runs of consecutive words that match nothing, as the user spelled them.
    unmatched: list[list[str]] = []
    position, previous_miss = 0, -2
    while position < len(tokens):
        match = _longest_match(tokens, position, phrases)
        if match is None:
            if tokens[position] not in FILLER:
                if previous_miss != position - 1:
                    unmatched.append([])
                unmatched[-1].append(spelled[position])
                previous_miss = position
            position += 1
            continue
        length, field, label = match
        if field in conditions and conditions[field] != label:
            raise InputError(
                f"request '{text}': names two {field.replace('_', ' ')}s, "
                f"'{conditions[field]}' and '{label}'; ask for one per request"
            )
        conditions[field] = label
        position += length
    if unmatched:
        runs = [" ".join(run) for run in unmatched]
        raise InputError(f"request '{text}': {_unmatched_message(runs, labels)}")
    if not conditions:
        raise InputError(
            f"request '{text}' names no cell type, tissue, organism, disease or perturbation "
            f"the model's corpus holds; {_known(labels)}"
        )
    return CellRequest(text, count, conditions)


def condition_phrase(request: CellRequest, phrases: Mapping[str, str]) -> str:
    """The request's conditions in the corpus's words ("of type B from kidney"), in the
    order the corpus writes them.

    Args:
      request: a parsed request.
      phrases: field -> the corpus template of that condition ("of type {cell_type}").
    """
    return " ".join(
        phrases[field].format(**{field: request.conditions[field]})
        for field in FIELDS
        if field in request.conditions
    )


def merged_labels(datasets: Mapping[str, Mapping]) -> dict[str, list[str]]:
    """field -> labels over every dataset of a corpus.json (``labels`` entries)."""
    merged: dict[str, set[str]] = {}
    for meta in datasets.values():
        for field, values in meta.get("labels", {}).items():
            merged.setdefault(field, set()).update(values)
    return {field: sorted(values) for field, values in merged.items()}


def _phrases(labels: Mapping[str, Sequence[str]]) -> dict[tuple[str, ...], tuple[str, str]]:
    """Token tuple -> (field, label) for every label, its plural and organism names."""
    phrases: dict[tuple[str, ...], tuple[str, str]] = {}
    for field in FIELDS:
        for label in labels.get(field, ()):
            words = tuple(_TOKEN.findall(label.lower()))
            if not words:
                continue
            forms = {words, (*words[:-1], _plural(words[-1]))}
            if field == "organism":
                forms |= {tuple(n.split()) for n in ORGANISM_NAMES.get(label.lower(), ())}
            for form in forms:
                phrases.setdefault(form, (field, label))
    return phrases


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "ch", "sh")):
        return f"{word}es"
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return f"{word[:-1]}ies"
    return f"{word}s"


def _longest_match(tokens: list[str], start: int, phrases: dict) -> tuple[int, str, str] | None:
    longest = max((len(p) for p in phrases), default=0)
    for length in range(min(longest, len(tokens) - start), 0, -1):
        found = phrases.get(tuple(tokens[start : start + length]))
        if found:
            return length, *found
    return None


def _unmatched_message(words: list[str], labels: Mapping[str, Sequence[str]]) -> str:
    choices = {label.lower(): (field, label) for field in FIELDS for label in labels.get(field, ())}
    notes = []
    for word in words:
        close = difflib.get_close_matches(word.lower(), list(choices), n=3, cutoff=0.6)
        hint = ", ".join(f"{choices[c][0].replace('_', ' ')} '{choices[c][1]}'" for c in close)
        notes.append(f"'{word}'" + (f" (did you mean {hint}?)" if hint else ""))
    return f"could not match {', '.join(notes)}; {_known(labels)}; --raw sends it verbatim"


def _known(labels: Mapping[str, Sequence[str]]) -> str:
    parts = []
    for field in FIELDS:
        values = list(labels.get(field, ()))
        if values:
            shown = ", ".join(values[:8]) + (", ..." if len(values) > 8 else "")
            parts.append(f"{field.replace('_', ' ')}: {shown}")
    return "the corpus knows " + ("; ".join(parts) if parts else "no labels")
