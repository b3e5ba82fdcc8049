"""Corpus parts drawn by Apache Beam workers: the same TFDS builder, with each split's
examples drawn in bundles on as many workers as the runner gives (DirectRunner processes
here; Dataflow, Flink or Spark with their pipeline options).

Every example is still a function of (seed, split, index), so the records are the ones a
single process writes; TFDS orders them by the hash of their index in both cases. Each
worker counts the datasets' cells once (the same pass a single-process build makes), then
reads the genes of one bundle's cells at a time. Counts of truncated, dropped and redrawn
examples are summed across workers into the part's counts (the longest record's length
takes the largest).
"""

import collections
import dataclasses
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from c2s_jax.errors import InputError

# Examples a worker draws at once. Each bundle reads its cells' genes in one pass over
# the datasets, so bundles are large enough for that pass to be worth it.
BUNDLE_EXAMPLES = 2048
# Workers of the local DirectRunner when no option names them.
DEFAULT_LOCAL_WORKERS = 2


@dataclasses.dataclass(frozen=True)
class WriterRecipe:
    """What a worker needs to rebuild the corpus writer (all picklable).

    Attributes:
      config: the corpus config as a plain dict.
      tokenizer_path: the tokenizer file.
      pre_tokenized: whether gene tables stand in for text tokenization (as checked).
    """

    config: dict
    tokenizer_path: str
    pre_tokenized: bool


def pipeline_options(options: Sequence[str]):
    """Beam PipelineOptions from KEY=VALUE strings (`--beam-option runner=DataflowRunner`).

    Without a runner, the local DirectRunner runs in processes with
    DEFAULT_LOCAL_WORKERS workers unless `direct_num_workers` says otherwise.

    Raises:
      InputError: apache-beam is not installed, or an option is not KEY=VALUE.
    """
    try:
        from apache_beam.options.pipeline_options import PipelineOptions
    except ImportError:
        raise InputError(
            "--beam needs apache-beam: pip install --no-deps -r requirements-beam.txt"
        ) from None
    flags = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise InputError(f"--beam-option {option!r}: expected KEY=VALUE")
        flags[key.removeprefix("--")] = value
    if "runner" not in flags:
        flags.setdefault("direct_running_mode", "multi_processing")
        flags.setdefault("direct_num_workers", str(DEFAULT_LOCAL_WORKERS))
    return PipelineOptions([f"--{key}={value}" for key, value in flags.items()])


def part_examples(
    recipe: WriterRecipe, split: str, indices: range, counts_file: Path
):  # -> beam.PTransform
    """The PTransform that draws `indices` of `split` as (index, record) pairs and writes
    the summed counts to `counts_file`."""
    import apache_beam as beam

    bundles = [
        (split, start, min(start + BUNDLE_EXAMPLES, indices.stop))
        for start in range(indices.start, indices.stop, BUNDLE_EXAMPLES)
    ]

    class _PartExamples(beam.PTransform):
        def expand(self, root):
            draw = beam.ParDo(_draw_records_fn(recipe)).with_outputs("counts", main="records")
            drawn = root | "bundles" >> beam.Create(bundles) | "draw" >> draw
            _ = (
                drawn.counts
                | "sum counts" >> beam.CombineGlobally(_sum_counts)
                | "write counts" >> beam.Map(_write_counts, str(counts_file))
            )
            return drawn.records

    return _PartExamples()


def _sum_counts(counts: Sequence[dict]) -> dict:
    from c2s_jax.corpus.records import add_counts

    total = collections.Counter()
    for count in counts:
        add_counts(total, count)
    return dict(total)


def _write_counts(counts: dict, path: str) -> None:
    from c2s_jax.storage.atomic import write_text_atomic

    write_text_atomic(Path(path), json.dumps(dict(sorted(counts.items()))))


_WRITERS: dict[str, object] = {}


def _writer(recipe: WriterRecipe):
    """The corpus writer of `recipe`, built once per worker process."""
    key = json.dumps(dataclasses.asdict(recipe), sort_keys=True, default=list)
    if key not in _WRITERS:
        import ml_collections

        from c2s_jax.corpus.cells import load_dataset
        from c2s_jax.corpus.config import corpus_spec
        from c2s_jax.corpus.prompts.formatter import Templates
        from c2s_jax.corpus.records import CorpusWriter
        from c2s_jax.corpus.tasks import ExampleFactory
        from c2s_jax.corpus.tokenizer import ExampleEncoder, Tokenizer

        spec = corpus_spec(ml_collections.ConfigDict(recipe.config))
        datasets = [
            load_dataset(d, spec.split, spec.seed, spec.spatial_neighbors, False, spec.chunk_size)
            for d in spec.datasets
        ]
        factory = ExampleFactory(spec, datasets, Templates.load())
        tokenizer = Tokenizer(recipe.tokenizer_path, spec.tokenizer.family)
        _WRITERS[key] = CorpusWriter(spec, factory, ExampleEncoder(tokenizer, recipe.pre_tokenized))
    return _WRITERS[key]


def _draw_records(recipe: WriterRecipe, bundle: tuple[str, int, int]) -> Iterator:
    split, start, stop = bundle
    writer = _writer(recipe)
    counts = collections.Counter()
    yield from writer.records(split, range(start, stop), counts)
    yield ("counts", dict(counts))


def _draw_records_fn(recipe: WriterRecipe):
    """The DoFn of `_draw_records` (made here: apache_beam is imported on demand)."""
    import apache_beam as beam

    class DrawRecords(beam.DoFn):
        def setup(self):
            # TFDS serializes this worker's records here too: with sorted maps, as the
            # single-process build does, so the shards are byte-identical.
            from c2s_jax.corpus.records import sort_proto_maps

            sort_proto_maps()

        def process(self, bundle):
            for item in _draw_records(recipe, bundle):
                if item[0] == "counts":
                    yield beam.pvalue.TaggedOutput("counts", item[1])
                else:
                    yield item

    return DrawRecords()
