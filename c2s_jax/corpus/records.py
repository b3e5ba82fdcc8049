"""Corpus records: pre-tokenized examples in ArrayRecord shards, written by a TFDS builder.

`build_corpus(spec, out)` writes:

  out/corpus.json       config, task list (ids), split sizes, per-task example counts,
                        tokenizer (path, sha256, family, pre-tokenized or text), counters
                        (truncated, dropped, skipped draws, longest record per split) and,
                        per dataset, its gene list, vocabulary counts, inverse-transform
                        fit and normalize_total target
  out/cells.parquet     dataset, cell index, cell name and split of every cell
  out/tokenizer/        the gene-aware tokenizer, when the config trains one
  out/records/corpus_records/partNNNNN/1.0.0/   one TFDS dataset per part, ArrayRecord
                        shards of the train/validation/test examples of that part

Each record holds `tokens` [L] int32 (BOS/EOS included), `loss_mask` [L] uint8 (answer
tokens), `task`, `source` (dataset name) and `cell_ids` [n] int64 (cells of the source).

Builds resume: parts already complete are kept, so an interrupted build continues at the
first unfinished part. Builds are deterministic: each example is a function of (seed,
split, index), and protos are serialized with sorted map keys, so the same config gives
byte-identical shards.
"""

import collections
import contextlib
import json
import logging
import math
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from c2s_jax.corpus.beam_parts import WriterRecipe
from c2s_jax.corpus.cells import CONDITION_FIELDS, DatasetCells, load_dataset
from c2s_jax.corpus.config import SPLITS, CorpusSpec
from c2s_jax.corpus.prompts.formatter import GeneRun, Templates
from c2s_jax.corpus.splits import SPLIT_IDS
from c2s_jax.corpus.tasks import ExampleFactory
from c2s_jax.corpus.tokenizer import ExampleEncoder, Tokenizer, token_efficiency, train_tokenizer
from c2s_jax.errors import InputError
from c2s_jax.storage.atomic import atomic_path, write_text_atomic

log = logging.getLogger(__name__)

CORPUS_JSON = "corpus.json"
CELLS_PARQUET = "cells.parquet"
RECORDS_DIR = "records"
BUILDER_NAME = "corpus_records"
VERSION = "1.0.0"
# Re-renders with fewer context genes before an over-long example is dropped.
MAX_FIT_ROUNDS = 6


FEATURES = tfds.features.FeaturesDict(
    {
        "tokens": tfds.features.Tensor(shape=(None,), dtype=np.int32),
        "loss_mask": tfds.features.Tensor(shape=(None,), dtype=np.uint8),
        "task": tfds.features.Text(),
        "source": tfds.features.Text(),
        "cell_ids": tfds.features.Tensor(shape=(None,), dtype=np.int64),
    }
)


class CorpusRecords(tfds.core.GeneratorBasedBuilder):
    """Pre-tokenized multi-task examples of one corpus part (a TFDS dataset per part).

    Args:
      part: part number (the builder config is named partNNNNN).
      records_dir: the TFDS data_dir.
      generate: split -> iterator of (key, record); only needed to write the part.
      split_names: the splits this part holds.
    """

    VERSION = tfds.core.Version(VERSION)

    def __init__(self, *, part: int, records_dir: Path, generate=None, split_names=()):
        self._generate = generate
        self._split_names = tuple(split_names)
        super().__init__(
            data_dir=str(records_dir),
            config=f"part{part:05d}",
            file_format="array_record",
        )

    @classmethod
    def get_builder_config(cls, name: str, version=None) -> tfds.core.BuilderConfig:
        # Parts are numbered, not listed: every 'partNNNNN' is a known config.
        return tfds.core.BuilderConfig(name=name)

    def _log_download_bytes(self) -> None:
        log.info("writing %s", self.data_dir)

    def _log_download_done(self) -> None:
        log.info("wrote %s", self.data_dir)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(builder=self, features=FEATURES)

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in self._split_names}

    def _generate_examples(self, split: str):
        # An iterator of (key, record), or a Beam PTransform that yields them.
        return self._generate(split)


@contextlib.contextmanager
def _sorted_proto_maps():
    """Serializes tf.Example protos with sorted feature maps while writing.

    TFDS serializes the feature map in hash-table order, which changes from process to
    process; deterministic serialization sorts the keys and makes shards byte-identical.
    """
    from tensorflow_datasets.core import example_serializer

    original = example_serializer.ExampleSerializer.serialize_example
    sort_proto_maps()
    try:
        yield
    finally:
        example_serializer.ExampleSerializer.serialize_example = original


def sort_proto_maps() -> None:
    """Makes TFDS serialize tf.Example protos with sorted feature maps in this process
    (Beam workers keep it; the single-process build sets it while writing)."""
    from tensorflow_datasets.core import example_serializer

    def serialize_example(self, example):
        return self.get_tf_example(example).SerializeToString(deterministic=True)

    example_serializer.ExampleSerializer.serialize_example = serialize_example


class CorpusWriter:
    """Turns examples into fitted, tokenized records and writes the parts.

    Args:
      spec: the checked corpus config.
      factory: draws examples.
      encoder: tokenizes them.
    """

    def __init__(self, spec: CorpusSpec, factory: ExampleFactory, encoder: ExampleEncoder):
        self.spec = spec
        self.factory = factory
        self.encoder = encoder

    def record(self, split: str, index: int, counts: collections.Counter) -> dict | None:
        """Record of example `index` of `split`, fitted to seq_len, or None if dropped.

        Examples longer than seq_len lose context genes (the lowest ranked of every prompt
        cell), never answer tokens; one whose answer alone does not fit is dropped. Both
        are counted in `counts`.
        """
        cap = None
        for _ in range(MAX_FIT_ROUNDS):
            example, misses = self.factory.example(split, index, cap)
            if example is None:
                counts.update({f"skipped: {k}": v for k, v in misses.items()})
                return None
            encoded = self.encoder.encode(example.rendered)
            excess = len(encoded.tokens) - self.spec.seq_len
            if excess <= 0:
                counts.update({f"redrawn: {k}": v for k, v in misses.items()})
                counts["truncated to seq_len"] += cap is not None
                return {
                    "tokens": encoded.tokens,
                    "loss_mask": encoded.loss_mask,
                    "task": example.task,
                    "source": example.source,
                    "cell_ids": example.cell_ids,
                }
            longest = max(
                (len(p.gene_ids) for p in example.rendered.prompt if isinstance(p, GeneRun)),
                default=0,
            )
            keep = 1.0 - excess / max(encoded.prompt_gene_tokens, 1)
            new_cap = math.floor(longest * keep) - 1
            cap = new_cap if cap is None else min(new_cap, cap - 1)
            if cap < 1:
                break
        counts["dropped: answer longer than seq_len"] += 1
        return None

    def records(
        self, split: str, indices: range, counts: collections.Counter, fetch: bool = True
    ) -> Iterator[tuple[int, dict]]:
        """(key, record) of examples `indices` of `split` (dropped ones left out).

        Args:
          split: the split.
          indices: example numbers.
          counts: gathers per-task counts, tokens, truncations and drops.
          fetch: read the genes of the examples' cells first (False: already held).
        """
        if fetch:
            self.factory.fetch_genes((split, index) for index in indices)
        for index in indices:
            record = self.record(split, index, counts)
            if record is not None:
                counts[f"{split}/{record['task']}"] += 1
                counts[f"{split} tokens"] += len(record["tokens"])
                longest = longest_key(split)
                counts[longest] = max(counts[longest], len(record["tokens"]))
                yield index, record

    def _indices(self, split: str, part: int) -> range:
        first = part * self.spec.examples_per_part
        return range(first, min(first + self.spec.examples_per_part, self.spec.examples[split]))

    def write_part(
        self,
        records_dir: Path,
        part: int,
        beam: WriterRecipe | None = None,
        beam_options: Sequence[str] = (),
    ) -> dict:
        """Writes one part (unless already complete) and returns its counts.

        Args:
          records_dir: the corpus's records folder.
          part: the part number.
          beam: draw the examples on Apache Beam workers, which rebuild the writer from
            this recipe (None: in this process).
          beam_options: KEY=VALUE Beam pipeline options (`beam_parts.pipeline_options`).
        """
        counts_path = records_dir / f"part{part:05d}.counts.json"
        part_dir = records_dir / BUILDER_NAME / f"part{part:05d}"
        if counts_path.exists() and (part_dir / VERSION / "dataset_info.json").exists():
            return json.loads(counts_path.read_text())
        shutil.rmtree(part_dir, ignore_errors=True)
        first = part * self.spec.examples_per_part
        split_names = [s for s in SPLITS if self.spec.examples[s] > first]
        counts = collections.Counter()
        download_config = tfds.download.DownloadConfig(verify_ssl=False)
        if beam is None:
            # One pass over the data reads the genes of every split's examples of the part.
            self.factory.fetch_genes(
                (split, index) for split in split_names for index in self._indices(split, part)
            )

            def generate(split: str):
                return self.records(split, self._indices(split, part), counts, fetch=False)
        else:
            from c2s_jax.corpus.beam_parts import part_examples, pipeline_options

            counts_files = {s: records_dir / f"part{part:05d}.{s}.counts.json" for s in split_names}
            download_config.beam_options = pipeline_options(beam_options)

            def generate(split: str):
                return part_examples(beam, split, self._indices(split, part), counts_files[split])

        builder = CorpusRecords(
            part=part, records_dir=records_dir, generate=generate, split_names=split_names
        )
        with _sorted_proto_maps():
            builder.download_and_prepare(
                download_dir=str(records_dir / ".downloads"), download_config=download_config
            )
        if beam is not None:
            for path in counts_files.values():
                add_counts(counts, json.loads(path.read_text()))
                path.unlink()
        for split in split_names:
            if not any(k.startswith(f"{split}/") for k in counts):
                raise InputError(
                    f"part {part}: split '{split}' produced no example (all draws failed: "
                    f"{dict(counts)}); check the datasets' {split} cells and the task mixture"
                )
        write_text_atomic(counts_path, json.dumps(dict(sorted(counts.items())), indent=1))
        return dict(counts)


def longest_key(split: str) -> str:
    """The counts key of the tokens of a split's longest record (BOS and EOS included):
    what training rows must hold (`config.data.seq_len` + 1) to take every record whole."""
    return f"{split} longest record (tokens)"


def add_counts(total: collections.Counter, more: Mapping[str, int]) -> None:
    """Adds the counts of one part (or one worker's share) into `total`: every count sums,
    except the longest-record lengths (`longest_key`), which take the larger."""
    longest = {longest_key(split) for split in SPLITS}
    for key, value in more.items():
        total[key] = max(total[key], value) if key in longest else total[key] + value


def n_parts(spec: CorpusSpec) -> int:
    """Parts of the corpus: each holds up to examples_per_part examples of every split."""
    return max(1, math.ceil(max(spec.examples.values()) / spec.examples_per_part))


def build_corpus(
    spec: CorpusSpec,
    out_dir: str | Path,
    progress: bool = True,
    beam: bool = False,
    beam_options: Sequence[str] = (),
) -> dict:
    """Builds (or resumes) the corpus of `spec` in `out_dir`; returns its metadata.

    Args:
      spec: the checked config.
      out_dir: the corpus folder.
      progress: show progress bars.
      beam: draw each part's examples on Apache Beam workers (`beam_parts`); the records
        are the same.
      beam_options: KEY=VALUE Beam pipeline options (runner, workers, project, ...).

    Raises:
      InputError: `out_dir` holds a corpus of another config, or the config cannot be
        served by its datasets.
    """
    out = Path(out_dir)
    _claim(out, spec)
    if not progress:
        tfds.disable_progress_bar()
    # Cells are counted here; each part reads the genes of the cells its examples use.
    datasets = [
        load_dataset(d, spec.split, spec.seed, spec.spatial_neighbors, False, spec.chunk_size)
        for d in spec.datasets
    ]
    factory = ExampleFactory(spec, datasets, Templates.load())
    # One read serves the tokenizer's sample, the table check and the first part.
    sampled = max(spec.tokenizer.training_examples, spec.tokenizer.check_examples)
    factory.fetch_genes(
        [(s, i) for s in SPLITS for i in range(min(spec.examples_per_part, spec.examples[s]))]
        + [("train", i) for i in range(sampled)]
    )
    tokenizer, efficiency = _tokenizer(spec, factory, datasets, out)
    encoder = ExampleEncoder(tokenizer, spec.tokenizer.pre_tokenized)
    equivalence = _check_table_equivalence(spec, factory, encoder)
    writer = CorpusWriter(spec, factory, encoder)
    recipe = WriterRecipe(spec.config, str(tokenizer.path), encoder.pre_tokenized) if beam else None
    counts = collections.Counter()
    records_dir = out / RECORDS_DIR
    for part in range(n_parts(spec)):
        add_counts(counts, writer.write_part(records_dir, part, recipe, beam_options))
    meta = _metadata(spec, factory, datasets, tokenizer, out, counts, equivalence, efficiency)
    write_text_atomic(out / CORPUS_JSON, json.dumps(meta, indent=1))
    _write_cells(datasets, out / CELLS_PARQUET)
    return meta


def _claim(out: Path, spec: CorpusSpec) -> None:
    """Records the config before writing; refuses to add parts of another config.

    A folder whose earlier config wrote no records yet (it failed on bad input, say) is
    taken over, its tokenizer trained for that config included.
    """
    claim = out / "config.json"
    text = json.dumps(spec.config, indent=1, sort_keys=True, default=list)
    if claim.exists() and claim.read_text() != text:
        if (out / RECORDS_DIR).exists():
            raise InputError(
                f"{out} holds a corpus of another config ({claim}); choose a new --out or delete it"
            )
        shutil.rmtree(out / "tokenizer", ignore_errors=True)
    write_text_atomic(claim, text)


def _tokenizer(spec: CorpusSpec, factory: ExampleFactory, datasets, out: Path):
    """The configured tokenizer, or a gene-aware one trained on the corpus text."""
    if spec.tokenizer.path is not None:
        return Tokenizer(spec.tokenizer.path, spec.tokenizer.family), None
    path = out / "tokenizer" / "c2s.model"
    texts = corpus_texts(factory, spec.tokenizer.training_examples)
    symbols = gene_symbols(datasets)
    if not path.exists():
        train_tokenizer(texts, path, spec.tokenizer.vocab_size, symbols)
    tokenizer = Tokenizer(path, spec.tokenizer.family)
    return tokenizer, token_efficiency(tokenizer, texts, symbols)


def corpus_texts(factory: ExampleFactory, n: int) -> list[str]:
    """Full texts of the first n training examples (what tokenizers learn from)."""
    factory.fetch_genes(("train", i) for i in range(n))
    texts = []
    for index in range(n):
        example, _ = factory.example("train", index)
        if example is not None:
            texts.append(example.rendered.text())
    return texts


def gene_symbols(datasets: list[DatasetCells]) -> list[str]:
    """Every dataset's gene symbols, first-seen order, without repeats."""
    return list(dict.fromkeys(s for d in datasets for s in d.sentences.symbols))


def _check_table_equivalence(spec: CorpusSpec, factory: ExampleFactory, encoder) -> dict:
    """Table lookup vs. text tokenization on the first training examples (see tokenizer)."""
    if not spec.tokenizer.pre_tokenized:
        return {"pre_tokenized": False, "checked": 0, "mismatches": 0}
    keys = [("train", i) for i in range(spec.tokenizer.check_examples)]
    factory.fetch_genes(keys)
    sample = [factory.example(*key)[0] for key in keys]
    sample = [e.rendered for e in sample if e is not None]
    mismatches = encoder.verify_tables(sample)
    return {
        "pre_tokenized": encoder.pre_tokenized,
        "checked": len(sample),
        "mismatches": mismatches,
    }


def _metadata(spec, factory, datasets, tokenizer, out, counts, equivalence, efficiency) -> dict:
    tokenizer_meta = tokenizer.describe()
    with contextlib.suppress(ValueError):
        tokenizer_meta["path"] = str(Path(tokenizer_meta["path"]).relative_to(out.resolve()))
    split_sizes = {s: sum(v for k, v in counts.items() if k.startswith(f"{s}/")) for s in SPLITS}
    return {
        "format": f"{BUILDER_NAME} {VERSION}",
        "tasks": factory.tasks,
        "task_probabilities": dict(zip(factory.tasks, factory.task_p.tolist(), strict=True)),
        "splits": split_sizes,
        "parts": n_parts(spec),
        "seq_len": spec.seq_len,
        "tokenizer": {**tokenizer_meta, **equivalence, "efficiency": efficiency},
        "counts": dict(sorted(counts.items())),
        "datasets": {
            d.spec.name: {
                "path": d.spec.path,
                "n_cells": len(d.sentences),
                "cells_per_split": {s: int((d.split == i).sum()) for s, i in SPLIT_IDS.items()},
                "genes": [str(s) for s in d.sentences.symbols],
                "vocabulary": d.sentences.vocabulary.as_dict(),
                "inverse_fit": {
                    k: getattr(d.sentences.fit, k) for k in d.sentences.fit.__dataclass_fields__
                },
                "target_sum": d.sentences.target_sum,
                "unmatched_perturbed_cells": d.controls.unmatched if d.controls else 0,
                # What generation requests are read against (`c2s generate`).
                "labels": {
                    field: d.labels(field) for field in CONDITION_FIELDS if field in d.fields
                },
            }
            for d in datasets
        },
        "config": spec.config,
    }


# Cells per row group of cells.parquet: bounds the memory of writing an atlas's table.
CELLS_ROW_GROUP = 1 << 16


def _write_cells(datasets: list[DatasetCells], path: Path) -> None:
    """cells.parquet: dataset, cell index, name and split of every cell, in row groups of
    CELLS_ROW_GROUP cells; the repeated dataset and split names are dictionary codes, so an
    atlas-sized table costs a few bytes per cell to write and a row group to hold."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    splits = pa.array(list(SPLIT_IDS))
    with atomic_path(path) as tmp:
        writer = None
        for d in datasets:
            name = pa.array([d.spec.name])
            for first in range(0, max(len(d.sentences), 1), CELLS_ROW_GROUP):
                rows = np.arange(first, min(first + CELLS_ROW_GROUP, len(d.sentences)))
                table = pa.table(
                    {
                        "dataset": pa.DictionaryArray.from_arrays(
                            np.zeros(len(rows), np.int32), name
                        ),
                        "cell_index": rows.astype(np.int64),
                        "cell_name": pa.array(
                            d.sentences.cell_names(rows).astype(object), pa.string()
                        ),
                        "split": pa.DictionaryArray.from_arrays(
                            d.split[rows].astype(np.int32), splits
                        ),
                    }
                )
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
        if writer is not None:
            writer.close()


def read_metadata(corpus_dir: str | Path) -> dict:
    """corpus.json of a built corpus."""
    path = Path(corpus_dir) / CORPUS_JSON
    if not path.exists():
        raise InputError(f"{corpus_dir}: no {CORPUS_JSON}; build it with `c2s corpus build`")
    return json.loads(path.read_text())


# Suffix of the per-split task index a training run writes beside the records: derived
# from the records, so it is not part of what a build produces.
TASK_INDEX_SUFFIX = ".task_ids.npy"


def task_index(corpus_dir: str | Path, split: str) -> np.ndarray:
    """[records] int16 the task id (index into corpus.json's tasks) of every record of a
    split, in the data source's order; read once and kept beside the records.

    Training reads it to mix tasks with weights other than the corpus's; the first such
    run reads the split's records once to write it (a build that is never reweighted
    never pays for it).
    """
    path = Path(corpus_dir) / RECORDS_DIR / f"{split}{TASK_INDEX_SUFFIX}"
    if path.exists():
        return np.load(path)
    task_ids = {task: i for i, task in enumerate(read_metadata(corpus_dir)["tasks"])}
    source = data_source(corpus_dir, split)
    ids = np.array([task_ids[source[i]["task"].decode()] for i in range(len(source))], np.int16)
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        np.save(stream, ids)
    return ids


def data_source(corpus_dir: str | Path, split: str):
    """Random-access records of one split over all parts (a TFDS ArrayRecord source)."""
    meta = read_metadata(corpus_dir)
    if meta["splits"].get(split, 0) == 0:
        raise InputError(f"{corpus_dir}: split '{split}' is empty ({meta['splits']})")
    records_dir = Path(corpus_dir) / RECORDS_DIR
    part_dirs = [
        records_dir / BUILDER_NAME / f"part{p:05d}" / VERSION for p in range(meta["parts"])
    ]
    builder = tfds.builder_from_directories([str(p) for p in part_dirs])
    return builder.as_data_source(split=split)
