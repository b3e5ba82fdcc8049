"""Corpus build and loader throughput, and the gene-aware tokenizer's token efficiency.

On the embedded pbmc68k data with configs/corpus/pbmc68k_multitask.py:
- build: cells/s and examples/s from loaded cell sentences into ArrayRecord records
  (tokenizer training and reading the data excluded; the stage `c2s corpus build` repeats
  per example), median of 3 builds;
- loader: packed tokens/s delivered per host at seq_len 8192 and batch 8, in this process
  and with 2 worker processes, with the share of non-pad positions (median of 3 runs);
- tokens per gene and per example of the gene-aware tokenizer against a generic BPE of
  the same size trained on the same text, and the genes that fit in 8,192 tokens.

    .venv/bin/python bench/bench_corpus.py

The machine is shared: the 1-minute load average is recorded beside the figures.
"""

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import median_seconds, update_section

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "corpus" / "pbmc68k_multitask.py"
TRAIN_EXAMPLES = 10_000
SEQ_LEN, BATCH = 8192, 8
LOADER_BATCHES = 60


def build_throughput(spec, work: Path) -> tuple[float, float, int, int]:
    """(cells/s, examples/s, examples, cells) of writing records from loaded datasets."""
    from c2s_jax.corpus.cells import load_dataset
    from c2s_jax.corpus.prompts.formatter import Templates
    from c2s_jax.corpus.records import CorpusWriter, n_parts
    from c2s_jax.corpus.tasks import ExampleFactory
    from c2s_jax.corpus.tokenizer import ExampleEncoder, Tokenizer

    datasets = [
        load_dataset(d, spec.split, spec.seed, spec.spatial_neighbors) for d in spec.datasets
    ]
    factory = ExampleFactory(spec, datasets, Templates.load())
    tokenizer = Tokenizer(work / "corpus" / "tokenizer" / "c2s.model", "c2s")
    cells = sum(
        len(e.cell_ids) for e, _ in (factory.example("train", i) for i in range(TRAIN_EXAMPLES))
    )
    runs = iter(range(100))

    def build():
        writer = CorpusWriter(spec, factory, ExampleEncoder(tokenizer))
        records = work / f"records{next(runs)}"
        for part in range(n_parts(spec)):
            writer.write_part(records, part)

    seconds, _ = median_seconds(build, 3)
    examples = sum(spec.examples.values())
    return cells / seconds, examples / seconds, examples, cells


def loader_throughput(corpus: Path, workers: int) -> tuple[float, float]:
    """(tokens/s, non-pad share) of packed batches, median over 3 runs."""
    from c2s_jax.train.pipeline import LoaderOptions, host_batches

    options = LoaderOptions(batch_size=BATCH, seq_len=SEQ_LEN, seed=0, worker_count=workers)
    rates, non_pad = [], []
    for _ in range(3):
        iterator = iter(host_batches(corpus, "train", options, 0, 1))
        next(iterator)  # warm-up: workers start, first window packed
        began = time.perf_counter()
        real = 0
        for _ in range(LOADER_BATCHES):
            batch = next(iterator)
            real += int((batch["segment_ids"] > 0).sum())
        seconds = time.perf_counter() - began
        rates.append(LOADER_BATCHES * BATCH * SEQ_LEN / seconds)
        non_pad.append(real / (LOADER_BATCHES * BATCH * SEQ_LEN))
    return statistics.median(rates), statistics.median(non_pad)


def main() -> None:
    from c2s_jax.config_loading import load_config
    from c2s_jax.corpus.cells import load_dataset
    from c2s_jax.corpus.config import corpus_spec
    from c2s_jax.corpus.prompts.formatter import Templates
    from c2s_jax.corpus.records import build_corpus, corpus_texts, gene_symbols
    from c2s_jax.corpus.tasks import ExampleFactory
    from c2s_jax.corpus.tokenizer import Tokenizer, token_efficiency, train_tokenizer

    load_before = os.getloadavg()[0]
    overrides = [f"examples={{'train':{TRAIN_EXAMPLES},'validation':500,'test':500}}"]
    spec = corpus_spec(load_config(CONFIG, overrides))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        meta = build_corpus(spec, work / "corpus", progress=False)
        cells_per_s, examples_per_s, examples, cells = build_throughput(spec, work)
        print(f"build: {cells_per_s:,.0f} cells/s, {examples_per_s:,.0f} examples/s")
        loader = {w: loader_throughput(work / "corpus", w) for w in (0, 2)}
        for w, (rate, share) in loader.items():
            print(f"loader, {w} workers: {rate:,.0f} tokens/s, {share:.1%} non-pad")

        datasets = [load_dataset(d, spec.split, spec.seed, 6) for d in spec.datasets]
        factory = ExampleFactory(spec, datasets, Templates.load())
        texts = corpus_texts(factory, 2000)
        symbols = gene_symbols(datasets)
        gene_model = work / "corpus" / "tokenizer" / "c2s.model"
        generic_model = train_tokenizer(
            texts, work / "generic.model", spec.tokenizer.vocab_size + len(symbols)
        )
        efficiency = {
            name: token_efficiency(Tokenizer(path, "c2s"), texts, symbols)
            for name, path in (("gene-aware", gene_model), ("generic BPE", generic_model))
        }
        sizes = {
            name: Tokenizer(path, "c2s").vocab_size
            for name, path in (("gene-aware", gene_model), ("generic BPE", generic_model))
        }
    load_after = os.getloadavg()[0]

    lines = [
        f"Embedded pbmc68k (700 cells), `configs/corpus/pbmc68k_multitask.py` with "
        f"{examples:,} examples ({meta['splits']}), 1-minute load average "
        f"{load_before:.2f} before and {load_after:.2f} after (2 cores shared with other work). "
        "Medians of 3 runs.",
        "",
        "| stage | throughput |",
        "|---|---|",
        f"| build: examples drawn, tokenized (gene table) and written to ArrayRecord | "
        f"{cells_per_s:,.0f} cells/s ({examples_per_s:,.0f} examples/s, {cells / examples:.1f} "
        "cells per example) |",
    ]
    for w, (rate, share) in loader.items():
        where = "in process" if w == 0 else f"{w} worker processes"
        lines.append(
            f"| loader, packed [{BATCH}, {SEQ_LEN}] batches, {where} | {rate:,.0f} tokens/s, "
            f"{share:.1%} non-pad |"
        )
    lines += [
        "",
        "Goal: >= 1,000,000 tokens/s per host with >= 95% non-pad positions.",
        "",
        "| tokenizer (trained on the same text) | pieces | tokens per gene | tokens per example "
        "| genes in 8,192 tokens |",
        "|---|---|---|---|---|",
    ]
    for name, eff in efficiency.items():
        lines.append(
            f"| {name} | {sizes[name]:,} | {eff['tokens_per_gene']:.2f} | "
            f"{eff['tokens_per_example']:.0f} | {SEQ_LEN / eff['tokens_per_gene']:,.0f} |"
        )
    print("\n".join(lines))
    update_section("bench_corpus", "\n".join(lines))


if __name__ == "__main__":
    main()
