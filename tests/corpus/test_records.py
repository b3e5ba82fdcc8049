"""Corpus records: metadata, determinism, resuming, truncation, the CLI."""

import collections
import hashlib
import shutil

import pandas as pd
import pytest

from c2s_jax.cli import main
from c2s_jax.corpus.cells import load_dataset
from c2s_jax.corpus.config import corpus_spec
from c2s_jax.corpus.prompts.formatter import Templates
from c2s_jax.corpus.records import build_corpus, data_source, read_metadata
from c2s_jax.corpus.tasks import ExampleFactory
from c2s_jax.corpus.tokenizer import ExampleEncoder, Tokenizer
from c2s_jax.errors import InputError
from c2s_jax.sentences.embedded import load_embedded
from tests.support.corpus_helpers import (
    PBMC_CONFIG,
    pbmc_corpus,
    perturb_seq_adata,
    scratch_dir,
    shard_digests,
    small_config,
)


def test_metadata_travels_with_the_records():
    corpus = pbmc_corpus()
    meta = read_metadata(corpus)
    pbmc = meta["datasets"]["pbmc68k"]
    assert len(pbmc["genes"]) == 765 and set(pbmc["vocabulary"]) == set(pbmc["genes"])
    assert {"slope", "intercept", "r2"} <= set(pbmc["inverse_fit"])
    tokenizer_path = corpus / meta["tokenizer"]["path"]
    assert meta["tokenizer"]["sha256"] == hashlib.sha256(tokenizer_path.read_bytes()).hexdigest()
    assert meta["tokenizer"]["pre_tokenized"] and meta["tokenizer"]["mismatches"] == 0
    assert meta["config"]["seed"] == 0
    cells = pd.read_parquet(corpus / "cells.parquet")
    assert len(cells) == 700
    # Names come from the input, in cell order (the index does not hold them).
    assert cells.cell_name.tolist() == list(load_embedded("embedded:pbmc68k").obs_names)
    assert cells.split.value_counts().to_dict() == pbmc["cells_per_split"]
    assert sum(meta["splits"].values()) == 760


def test_records_hold_tokens_mask_task_and_source():
    corpus = pbmc_corpus()
    meta = read_metadata(corpus)
    tokenizer = Tokenizer(corpus / meta["tokenizer"]["path"], "c2s")
    source = data_source(corpus, "validation")
    assert len(source) == meta["splits"]["validation"]
    for i in range(10):
        record = source[i]
        tokens, mask = record["tokens"], record["loss_mask"]
        assert tokens[0] == tokenizer.bos_id and tokens[-1] == tokenizer.eos_id
        assert len(tokens) <= meta["seq_len"] and 0 < mask.sum() < len(tokens)
        assert record["task"].decode() in meta["tasks"] and record["source"] == b"pbmc68k"
        assert tokenizer.decode(tokens[mask == 1]).endswith(".")


def test_same_config_gives_byte_identical_shards_and_builds_resume():
    first = pbmc_corpus()
    second = scratch_dir() / "again"
    build_corpus(corpus_spec(small_config()), second, progress=False)
    assert shard_digests(first) == shard_digests(second)
    # An interrupted build: the second part never finished. Rebuilding redoes only it.
    kept = second / "records" / "corpus_records" / "part00000" / "1.0.0" / "dataset_info.json"
    kept_mtime = kept.stat().st_mtime_ns
    shutil.rmtree(second / "records" / "corpus_records" / "part00001")
    (second / "records" / "part00001.counts.json").unlink()
    build_corpus(corpus_spec(small_config()), second, progress=False)
    assert kept.stat().st_mtime_ns == kept_mtime
    assert shard_digests(first) == shard_digests(second)


def test_another_config_in_the_same_folder_is_refused():
    with pytest.raises(InputError, match="another config"):
        build_corpus(corpus_spec(small_config(seed=5)), pbmc_corpus(), progress=False)


def test_long_examples_lose_context_genes_never_answers():
    out = scratch_dir() / "short"
    config = small_config(seq_len=160)
    config.examples = dict(train=120, validation=20, test=20)
    meta = build_corpus(corpus_spec(config), out, progress=False)
    assert meta["counts"]["truncated to seq_len"] > 0
    source = data_source(out, "train")
    tokenizer = Tokenizer(out / meta["tokenizer"]["path"], "c2s")
    for i in range(len(source)):
        record = source[i]
        assert len(record["tokens"]) <= 160
        assert tokenizer.decode(record["tokens"][record["loss_mask"] == 1]).endswith(".")


def _build_with_cli(out, *overrides: str) -> int:
    argv = ["corpus", "build", "--config", str(PBMC_CONFIG), "--out", str(out), "--no-progress"]
    return main([*argv, *(f"--config.{o}" for o in overrides)])


def test_cli_builds_a_corpus_and_trains_a_tokenizer(capsys):
    out = scratch_dir()
    sizes = ["examples={'train':100,'validation':20,'test':20}", "tokenizer.training_examples=100"]
    assert _build_with_cli(out / "c", *sizes) == 0
    printed = capsys.readouterr().out
    assert "wrote 140 examples" in printed and "cell_type_annotation" in printed
    model = out / "tok.model"
    train = ["tokenizer", "train", "--config", str(PBMC_CONFIG), "--out", str(model)]
    assert main([*train, "--vocab-size", "300", "--config.tokenizer.training_examples=100"]) == 0
    printed = capsys.readouterr().out
    assert "gene-aware" in printed and "1.00 tokens/gene" in printed
    assert model.exists() and (out / "tok.generic.model").exists()


def test_bad_config_ends_with_an_input_error(capsys):
    assert _build_with_cli(scratch_dir(), "tasks.cell_typing=1.0") == 2
    assert "no key 'tasks.cell_typing'" in capsys.readouterr().err
    assert main(["corpus", "build", "--config", "missing.py", "--out", "x"]) == 2
    assert "missing.py: no such config file" in capsys.readouterr().err


def test_many_datasets_feed_one_corpus_by_their_weights():
    folder = scratch_dir()
    perturb_seq_adata().write_h5ad(folder / "perturb.h5ad")
    config = small_config(**{"tasks.perturbation_response": 2.0})
    config.examples = dict(train=300, validation=40, test=40)
    config.datasets = [
        {**config.datasets[0], "weight": 1.0},
        dict(
            name="perturb",
            path=str(folder / "perturb.h5ad"),
            weight=3.0,
            cell_type_key="cell_type",
            organism="Homo sapiens",
            perturbation_key="perturbation",
            batch_key="batch",
        ),
    ]
    meta = build_corpus(corpus_spec(config), folder / "corpus", progress=False)
    assert set(meta["datasets"]) == {"pbmc68k", "perturb"}
    sources = collections.Counter()
    source = data_source(folder / "corpus", "train")
    for i in range(len(source)):
        record = source[i]
        sources[(record["task"].decode(), record["source"].decode())] += 1
    assert {s for t, s in sources if t == "perturbation_response"} == {"perturb"}
    # Question answering can use either dataset: weights 1 : 3.
    qa = {s: n for (t, s), n in sources.items() if t == "question_answering"}
    assert qa["perturb"] > 1.5 * qa["pbmc68k"]


def test_a_failed_build_leaves_the_folder_to_the_corrected_config():
    out = scratch_dir() / "retry"
    with pytest.raises(InputError, match="spatial"):
        build_corpus(
            corpus_spec(small_config(**{"tasks.spatial_neighborhood": 1.0})), out, progress=False
        )
    config = small_config()
    config.examples = dict(train=40, validation=10, test=10)
    assert build_corpus(corpus_spec(config), out, progress=False)["splits"]["train"] == 40


def test_records_follow_the_seed_not_the_chunk_size_nor_what_memory_holds():
    config = small_config()
    config.chunk_size = 37  # cells counted and genes fetched 37 at a time
    chunked = scratch_dir() / "chunked"
    build_corpus(corpus_spec(config), chunked, progress=False)
    assert shard_digests(chunked) == shard_digests(pbmc_corpus())

    # The build holds only the genes of each part's cells; drawn again with every cell's
    # genes in memory, the examples are token for token the same.
    spec = corpus_spec(small_config())
    cells = load_dataset(spec.datasets[0], spec.split, spec.seed, spec.spatial_neighbors)
    factory = ExampleFactory(spec, [cells], Templates.load())
    meta = read_metadata(pbmc_corpus())
    encoder = ExampleEncoder(Tokenizer(pbmc_corpus() / meta["tokenizer"]["path"], "c2s"))
    stored = collections.defaultdict(list)  # records are shuffled; a cell may serve twice
    for record in data_source(pbmc_corpus(), "train"):
        key = (record["task"].decode(), tuple(record["cell_ids"]))
        stored[key].append(record["tokens"].tolist())
    for index in range(40):
        example, _ = factory.example("train", index)
        tokens = encoder.encode(example.rendered).tokens.tolist()
        assert tokens in stored[(example.task, tuple(example.cell_ids))]


def test_fetching_holds_the_genes_of_the_drawn_cells_only():
    spec = corpus_spec(small_config())
    data = load_dataset(spec.datasets[0], spec.split, spec.seed, 6, all_genes=False)
    reference = load_dataset(spec.datasets[0], spec.split, spec.seed, 6)
    factory = ExampleFactory(spec, [data], Templates.load())
    with data.store.recording() as recorded:
        for index in range(3):
            factory.example("validation", index)
    factory.fetch_genes(("validation", index) for index in range(3))
    for cell in recorded:
        assert data.genes(cell).tolist() == reference.genes(cell).tolist()
    unused = next(c for c in range(len(data.sentences)) if c not in recorded)
    with pytest.raises(LookupError, match=f"cell {unused} .* not fetched"):
        data.genes(unused)


def test_a_sentence_table_builds_the_same_corpus_as_its_source(tmp_path):
    from c2s_jax.sentences.cell_sentences import SentenceOptions
    from c2s_jax.sentences.sentence_files import write_sentences

    table = tmp_path / "pbmc.parquet"
    obs = ["cell_type", "tissue", "organism"]
    options = SentenceOptions(chunk_size=100)  # several row groups
    write_sentences(["embedded:pbmc68k"], table, options, obs, progress=False)
    config = small_config()
    config.datasets[0]["path"] = str(table)
    config.chunk_size = 64
    out = scratch_dir() / "from_table"
    build_corpus(corpus_spec(config), out, progress=False)
    assert shard_digests(out) == shard_digests(pbmc_corpus())
    # Cell names are read from the table where cells.parquet writes them (several row groups).
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "cells.parquet"), pd.read_parquet(pbmc_corpus() / "cells.parquet")
    )
    assert read_metadata(out)["datasets"]["pbmc68k"]["path"] == str(table)
    assert (
        read_metadata(out)["datasets"]["pbmc68k"]["genes"]
        == (read_metadata(pbmc_corpus())["datasets"]["pbmc68k"]["genes"])
    )
    # A table written before sentence lengths were stored: lengths counted from the text.
    import pyarrow.parquet as pq

    older = pq.read_table(table).drop_columns(["sentence_length"])
    pq.write_table(older, table, row_group_size=100)
    older_out = scratch_dir() / "older_table"
    build_corpus(corpus_spec(config), older_out, progress=False)
    assert shard_digests(older_out) == shard_digests(pbmc_corpus())

    config.datasets[0]["group_keys"] = ("batch",)
    with pytest.raises(InputError, match=r"no obs column \['batch'\].*--obs"):
        build_corpus(corpus_spec(config), scratch_dir() / "missing", progress=False)
    (tmp_path / "notes.txt").write_text("cells")
    config.datasets[0]["path"] = str(tmp_path / "notes.txt")
    with pytest.raises(InputError, match=r"datasets.pbmc68k.path': .*notes.txt.*sentence table"):
        build_corpus(corpus_spec(config), scratch_dir() / "text", progress=False)
    config.datasets[0]["path"] = str(table)
    (tmp_path / "pbmc.meta.json").unlink()
    with pytest.raises(InputError, match="without its metadata pbmc.meta.json"):
        build_corpus(corpus_spec(config), scratch_dir() / "no_meta", progress=False)
