"""Verifiable rewards for C2S completions: each maps (completion text, target) to a float.

A reward applies to the tasks whose answers it can check and scores 0 on every other task.
The G completions of one prompt share one target, so a reward that does not apply adds the
same 0 to the whole group and leaves the group-normalized advantages unchanged: one reward
set can score a batch that mixes tasks.

| name            | applies to                | range   | meaning                          |
|-----------------|---------------------------|---------|----------------------------------|
| exact_match     | label answers             | {0, 1}  | the right label                  |
| rank_overlap    | single-cell answers       | [0, 1]  | rank-weighted top-gene agreement |
| spearman_shared | single-cell answers       | [-1, 1] | rank correlation on shared genes |
| gene_validity   | single-cell and cell-list | [-1, 0] | penalty: invalid/repeated genes  |
| format          | every task                | {0, 1}  | the answer has the task's shape  |

Higher is better for every reward, so weights combine them with positive signs.

Answer shapes follow templates.json: labels ('T cell.', 'yes.', a gene symbol for the
most-expressed question) for annotation, tissue and question answering; one cell sentence
('GENE GENE ... GENE.') for multi-cell context, spatial neighborhood and perturbation
response; a numbered cell list (the template's `cell_list` item, one per line) for
conditional generation; free text ending a sentence for dataset descriptions. Question
answering shows its options as text, not letters, so its reference answer is the option
text and exact_match compares that text.
"""

import dataclasses
import functools
import re
import string
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from c2s_jax.corpus.prompts.formatter import GeneRun, Rendered, Templates
from c2s_jax.errors import InputError

LABEL = "label"
CELL_SENTENCE = "cell_sentence"
CELL_LIST = "cell_list"
TEXT = "text"

# Answer shape of each task; 'question_answering/<kind>' takes the shape of its task.
# Plain language modeling has no answer to verify and so no entry.
ANSWER_SHAPES = {
    "cell_type_annotation": LABEL,
    "tissue_inference": LABEL,
    "question_answering": LABEL,
    "conditional_generation": CELL_LIST,
    "multi_cell_context": CELL_SENTENCE,
    "spatial_neighborhood": CELL_SENTENCE,
    "perturbation_response": CELL_SENTENCE,
    "nl_interpretation": TEXT,
}

# Cell sentence words are upper-cased symbols: letters, digits and inner '-', '.', '_'
# (HLA-DRB1, RP11-34P13.7), ending with a letter or digit so a sentence's period is not
# mistaken for part of its last gene.
_GENE = r"[A-Z0-9](?:[A-Z0-9._\-]*[A-Z0-9])?"
_GENE_RUN = re.compile(rf"{_GENE}(?: {_GENE})*")
# The longest label the format reward accepts, in words (long ontology cell-type names
# reach about ten); a cell sentence given as a label is far longer.
MAX_LABEL_WORDS = 16


@dataclasses.dataclass(frozen=True)
class RewardTarget:
    """What a completion is checked against.

    Attributes:
      task: task name as in the corpus config, or 'question_answering/<kind>'.
      answer: the reference answer text as rendered (ending with a period).
      genes: the reference cell's sentence, most expressed first, for single-cell answers
        (the true perturbed cell for perturbation response); empty for other tasks.
      vocabulary: the valid gene symbols, for gene_validity on cell answers. Build it once
        and share it between targets.
      synonyms: alias -> canonical label for exact_match (e.g. 'CD14+ monocyte' ->
        'classical monocyte'); stored normalized (synonym_table), so lookups are exact.
    """

    task: str
    answer: str
    genes: tuple[str, ...] = ()
    vocabulary: frozenset[str] = frozenset()
    synonyms: Mapping[str, str] = dataclasses.field(default_factory=dict, hash=False)

    def __post_init__(self):
        if self.task.split("/")[0] not in ANSWER_SHAPES:
            raise ValueError(
                f"no verifiable answer shape for task '{self.task}'; rewards know "
                f"{sorted(ANSWER_SHAPES)} (with 'question_answering/<kind>')"
            )
        # Normalized once here rather than on every completion scored.
        object.__setattr__(self, "synonyms", synonym_table(self.synonyms))

    @property
    def shape(self) -> str:
        """The answer shape: LABEL, CELL_SENTENCE, CELL_LIST or TEXT."""
        return ANSWER_SHAPES[self.task.split("/")[0]]

    @classmethod
    def from_rendered(
        cls,
        task: str,
        rendered: Rendered,
        vocabulary: frozenset[str] = frozenset(),
        synonyms: Mapping[str, str] | None = None,
    ) -> "RewardTarget":
        """The target of a rendered corpus example (its answer, and its cell for cell tasks)."""
        runs = [part for part in rendered.answer if isinstance(part, GeneRun)]
        genes = ()
        if ANSWER_SHAPES.get(task.split("/")[0]) == CELL_SENTENCE and len(runs) == 1:
            genes = tuple(str(g) for g in runs[0].words())
        return cls(task, rendered.answer_text(), genes, vocabulary, synonyms or {})


RewardFn = Callable[[str, RewardTarget], float]


# ---- parsing -------------------------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """Case-folded text without surrounding space, runs of whitespace or a final period."""
    return " ".join(text.split()).casefold().removesuffix(".").rstrip()


def synonym_table(synonyms: Mapping[str, str]) -> dict[str, str]:
    """The alias -> canonical map with both sides normalized (see normalize_answer)."""
    return {normalize_answer(alias): normalize_answer(label) for alias, label in synonyms.items()}


def sentence_genes(text: str) -> list[str]:
    """Words of the first cell sentence in `text`: up to the first word ending with a period.

    The period is dropped; text with no period (a completion cut at the length limit)
    gives all its words.
    """
    genes = []
    for word in text.split():
        if word.endswith("."):
            if word[:-1]:
                genes.append(word[:-1])
            break
        genes.append(word)
    return genes


@functools.cache
def _cell_list_layout() -> tuple[re.Pattern, str]:
    """(pattern of one cell-list item with groups 'index' and 'genes', item separator)."""
    cell_list = Templates.load().table["cell_list"]
    groups = {"index": r"(?P<index>\d+)", "cell_sentence": r"(?P<genes>.*?)"}
    pattern = "".join(
        re.escape(literal) + (groups[field] if field else "")
        for literal, field, _, _ in string.Formatter().parse(cell_list["item"])
    )
    return re.compile(pattern), cell_list["separator"]


def _cell_list_items(text: str) -> list[re.Match | None]:
    """The items of a cell-list answer, one match (or None where malformed) per item."""
    item, separator = _cell_list_layout()
    return [item.fullmatch(line.strip()) for line in text.strip().split(separator)]


def completion_cells(text: str, shape: str) -> list[list[str]]:
    """The gene words of each cell in a completion of the given answer shape.

    A single-cell answer gives one list; a cell list gives one per well-formed item
    (malformed items contribute no genes); other shapes give none.
    """
    if shape == CELL_SENTENCE:
        return [sentence_genes(text)]
    if shape == CELL_LIST:
        return [sentence_genes(m["genes"]) for m in _cell_list_items(text) if m is not None]
    return []


# ---- rewards -------------------------------------------------------------------------------


def exact_match(completion: str, target: RewardTarget) -> float:
    """1 when the normalized completion equals the normalized reference label, else 0.

    Both sides are normalized (`normalize_answer`: case fold, strip, collapse whitespace,
    drop the final period), then mapped through the target's synonyms. Applies to label
    tasks only.
    """
    if target.shape != LABEL:
        return 0.0

    def canonical(text: str) -> str:
        label = normalize_answer(text)
        return target.synonyms.get(label, label)

    return float(canonical(completion) == canonical(target.answer))


def rank_overlap(completion: str, target: RewardTarget) -> float:
    """Rank-weighted agreement of the generated gene order with the reference cell, in [0, 1].

    With R the reference genes (K of them) and G the generated ones, the overlap at depth d
    is A_d = |set(G[:d]) ∩ set(R[:d])| / d, and

        rank_overlap = sum_{d=1..K} A_d / d  /  sum_{d=1..K} 1 / d.

    Every depth counts the top genes again and the 1/d weights favor shallow depths, so
    the top of the ranking dominates. It is 1 exactly when G starts with R; a reversed
    sentence of 100 genes scores about 0.07 and a random order about 1/H_K ≈ 0.19.
    Repeated generated genes count once, so repetition lowers the score; generated genes
    beyond K are ignored. Applies to single-cell answers.
    """
    if target.shape != CELL_SENTENCE:
        return 0.0
    reference = _reference_genes(target, "rank_overlap")
    generated = sentence_genes(completion)
    seen_generated: set[str] = set()
    seen_reference: set[str] = set()
    shared = 0
    score = 0.0
    for depth, reference_gene in enumerate(reference, start=1):
        if depth <= len(generated) and generated[depth - 1] not in seen_generated:
            seen_generated.add(generated[depth - 1])
            shared += generated[depth - 1] in seen_reference
        if reference_gene not in seen_reference:
            seen_reference.add(reference_gene)
            shared += reference_gene in seen_generated
        score += shared / depth / depth
    return score / sum(1.0 / depth for depth in range(1, len(reference) + 1))


def spearman_shared(completion: str, target: RewardTarget) -> float:
    """Spearman correlation of gene ranks over the genes in both sentences, in [-1, 1].

    Each gene's rank is its first position in the generated sentence and its position in
    the reference; 0 when fewer than 3 genes are shared (too few for a meaningful rank
    correlation). Applies to single-cell answers.
    """
    if target.shape != CELL_SENTENCE:
        return 0.0
    reference = _reference_genes(target, "spearman_shared")
    generated_position: dict[str, int] = {}
    for position, gene in enumerate(sentence_genes(completion)):
        generated_position.setdefault(gene, position)
    # Shared genes in reference order, so their reference ranks are 0..n-1.
    shared = [generated_position[g] for g in dict.fromkeys(reference) if g in generated_position]
    n = len(shared)
    if n < 3:
        return 0.0
    generated_rank = np.argsort(np.argsort(shared))
    squared_rank_gap = float(np.sum((np.arange(n) - generated_rank) ** 2))
    return 1.0 - 6.0 * squared_rank_gap / (n * (n * n - 1))


def gene_validity(completion: str, target: RewardTarget) -> float:
    """Minus the fraction of generated gene words that are invalid or repeated, in [-1, 0].

    A word is bad when it is not in `target.vocabulary` or already appeared earlier in the
    same cell; the reward is -(bad words) / (all words) over every cell of the answer, and
    -1 when the completion holds no gene word at all. Applies to cell answers.
    """
    if target.shape not in (CELL_SENTENCE, CELL_LIST):
        return 0.0
    if not target.vocabulary:
        raise ValueError(f"gene_validity needs target.vocabulary (task '{target.task}')")
    words = bad = 0
    for genes in completion_cells(completion, target.shape):
        seen: set[str] = set()
        for gene in genes:
            bad += gene not in target.vocabulary or gene in seen
            seen.add(gene)
        words += len(genes)
    return -1.0 if words == 0 else -bad / words


def answer_format(completion: str, target: RewardTarget) -> float:
    """1 when the completion has the shape of the task's answer, else 0.

    - label: one line of at most MAX_LABEL_WORDS words with a letter or digit, ending with
      a single period;
    - cell sentence: upper-case gene words separated by single spaces, ending with a period;
    - cell list: one template item per line ('Cell 1: GENE ... GENE.'), numbered from 1,
      with as many cells as the reference answer;
    - text: non-empty, ending with '.', '!' or '?'.
    """
    text = completion.strip()
    shape = target.shape
    if shape == LABEL:
        body = text.removesuffix(".")
        return float(
            text.endswith(".")
            and not body.endswith(".")
            and "\n" not in text
            and any(c.isalnum() for c in body)
            and len(body.split()) <= MAX_LABEL_WORDS
        )
    if shape == CELL_SENTENCE:
        return float(text.endswith(".") and _GENE_RUN.fullmatch(text[:-1]) is not None)
    if shape == CELL_LIST:
        items = _cell_list_items(text)
        well_formed = all(
            m is not None and int(m["index"]) == i and _GENE_RUN.fullmatch(m["genes"])
            for i, m in enumerate(items, start=1)
        )
        return float(well_formed and len(items) == len(_cell_list_items(target.answer)))
    return float(text.endswith((".", "!", "?")))


def _reference_genes(target: RewardTarget, reward: str) -> tuple[str, ...]:
    if not target.genes:
        raise ValueError(
            f"{reward} needs the reference cell's genes (target.genes) for task '{target.task}'"
        )
    return target.genes


# ---- registry and batch scoring -------------------------------------------------------------

REWARDS: dict[str, RewardFn] = {
    "exact_match": exact_match,
    "rank_overlap": rank_overlap,
    "spearman_shared": spearman_shared,
    "gene_validity": gene_validity,
    "format": answer_format,
}


@dataclasses.dataclass(frozen=True)
class RewardSet:
    """Named reward functions and the weights that add them into one scalar reward.

    Attributes:
      names: [R] reward names (keys of REWARDS).
      fns: [R] the reward functions.
      weights: [R] weight of each reward in the total.
    """

    names: tuple[str, ...]
    fns: tuple[RewardFn, ...]
    weights: tuple[float, ...]

    def score(self, completions: Sequence[str], targets: Sequence[RewardTarget]) -> np.ndarray:
        """[N, R] float64 rewards of each completion (see score_completions)."""
        return score_completions(completions, targets, self.fns)

    def total(self, scores_NR: np.ndarray) -> np.ndarray:
        """[N] float64 weighted sum of the rewards in `scores_NR` [N, R]."""
        return np.asarray(scores_NR, np.float64) @ np.asarray(self.weights, np.float64)


def build_rewards(names: Sequence[str], weights: Sequence[float] | None = None) -> RewardSet:
    """The RewardSet of `names` (keys of REWARDS), weighted 1 each unless `weights` is given.

    Raises:
      InputError: an unknown or repeated name, no names, or weights that do not match the
        names in number or are not finite.
    """
    names = tuple(names)
    if not names:
        raise InputError(f"no rewards named; choose from {', '.join(REWARDS)}")
    for name in names:
        if name not in REWARDS:
            raise InputError(f"unknown reward '{name}'; valid rewards: {', '.join(REWARDS)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"rewards named more than once: {', '.join(repeated)}")
    weights = tuple(float(w) for w in weights) if weights is not None else (1.0,) * len(names)
    if len(weights) != len(names):
        raise InputError(
            f"{len(weights)} reward weights for {len(names)} rewards ({', '.join(names)}); "
            "give one weight per reward"
        )
    if not all(np.isfinite(weights)):
        raise InputError(f"reward weights must be finite numbers, got {list(weights)}")
    return RewardSet(names, tuple(REWARDS[n] for n in names), weights)


def score_completions(
    completions: Sequence[str], targets: Sequence[RewardTarget], reward_fns: Sequence[RewardFn]
) -> np.ndarray:
    """Every reward of every completion.

    Args:
      completions: [N] completion texts (the answer part only).
      targets: [N] the target of each completion (repeat a prompt's target G times).
      reward_fns: [R] reward functions.

    Returns:
      [N, R] float64.
    """
    if len(completions) != len(targets):
        raise ValueError(f"{len(completions)} completions but {len(targets)} targets")
    scores_NR = np.zeros((len(completions), len(reward_fns)), np.float64)
    for i, (completion, target) in enumerate(zip(completions, targets, strict=True)):
        for j, reward_fn in enumerate(reward_fns):
            scores_NR[i, j] = reward_fn(completion, target)
    return scores_NR
