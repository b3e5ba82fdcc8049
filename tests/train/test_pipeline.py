"""Input pipeline: packing masks, host sharding, mixture in batches, exact restore, mesh output."""

import collections
import json
import shutil

import grain
import jax
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec

from c2s_jax.corpus.records import data_source, longest_key, read_metadata, task_index
from c2s_jax.errors import InputError
from c2s_jax.train.packing import BATCH_KEYS, PackedBatchDataset, pack_rows
from c2s_jax.train.pipeline import CorpusLoader, LoaderOptions, host_batches
from tests.support.corpus_helpers import pbmc_corpus

OPTIONS = LoaderOptions(batch_size=4, seq_len=1024, seed=3, pack_window=256)


def _segments(batch: dict):
    """(row, start, end) of every example in a numpy batch."""
    for row, segment_ids in enumerate(batch["segment_ids"]):
        for segment in np.unique(segment_ids[segment_ids > 0]):
            where = np.flatnonzero(segment_ids == segment)
            yield row, where[0], where[-1] + 1


def test_first_fit_decreasing_places_every_item_once_within_capacity():
    lengths = np.random.default_rng(0).integers(1, 900, 500)
    rows = pack_rows(lengths, 1000)
    assert sorted(i for row in rows for i in row) == list(range(500))
    assert all(lengths[row].sum() <= 1000 for row in rows)
    # First-fit decreasing needs at most 11/9 of the optimal rows (plus one).
    assert len(rows) <= 11 / 9 * np.ceil(lengths.sum() / 1000) + 1
    short = np.random.default_rng(1).integers(1, 400, 2000)
    assert short.sum() / (2000 * len(pack_rows(short, 2000))) > 0.99


def test_packed_batches_shift_targets_within_each_example():
    corpus = pbmc_corpus()
    bos = read_metadata(corpus)["tokenizer"]["bos_id"]
    batch = next(iter(host_batches(corpus, "train", OPTIONS, 0, 1)))
    assert set(batch) == set(BATCH_KEYS)
    assert all(v.shape == (4, 1024) and v.dtype == np.int32 for v in batch.values())
    starts = 0
    for row, start, end in _segments(batch):
        tokens, targets = batch["tokens"][row, start:end], batch["targets"][row, start:end]
        np.testing.assert_array_equal(tokens[1:], targets[:-1])
        np.testing.assert_array_equal(batch["positions"][row, start:end], np.arange(end - start))
        assert tokens[0] == bos and (tokens[1:] != bos).all()
        assert len(np.unique(batch["task_id"][row, start:end])) == 1
        mask = batch["loss_mask"][row, start:end]
        # The answer is the tail of every example: its mask is 0...0 1...1.
        assert mask[-1] == 1 and (np.diff(mask) >= 0).all()
        starts += 1
    padding = batch["segment_ids"] == 0
    assert (
        starts > 4 and not batch["loss_mask"][padding].any() and not batch["tokens"][padding].any()
    )


def test_rows_shorter_than_the_longest_record_are_refused_by_config_key():
    """Rows must hold every record whole: corpus.json counts each split's longest record,
    and a shorter config.data.seq_len is an error that names the length needed."""
    corpus = pbmc_corpus()
    meta = read_metadata(corpus)
    longest = meta["counts"][longest_key("train")]
    records = data_source(corpus, "train")
    assert longest == max(len(records[i]["tokens"]) for i in range(len(records)))
    just_enough = LoaderOptions(batch_size=4, seq_len=longest - 1, seed=3, pack_window=32)
    batch = next(iter(host_batches(corpus, "train", just_enough, 0, 1)))
    assert batch["tokens"].shape == (4, longest - 1)
    short = LoaderOptions(batch_size=4, seq_len=longest - 2, seed=3, pack_window=32)
    with pytest.raises(InputError, match=rf"config.data.seq_len >= {longest - 1}"):
        host_batches(corpus, "train", short, 0, 1)


def test_a_corpus_without_its_longest_record_counted_is_held_to_its_seq_len(tmp_path):
    """Corpora built before the longest record was counted: the seq_len they were built
    with bounds their records, so rows must hold that."""
    older = tmp_path / "older"
    shutil.copytree(pbmc_corpus(), older)
    meta = read_metadata(older)
    del meta["counts"][longest_key("train")]
    (older / "corpus.json").write_text(json.dumps(meta))
    fits = LoaderOptions(batch_size=4, seq_len=meta["seq_len"] - 1, seed=3, pack_window=32)
    assert next(iter(host_batches(older, "train", fits, 0, 1)))["tokens"].shape[1] == 255
    short = LoaderOptions(batch_size=4, seq_len=meta["seq_len"] - 2, seed=3, pack_window=32)
    with pytest.raises(InputError, match=r"at most its seq_len.*seq_len >= 255"):
        host_batches(older, "train", short, 0, 1)


def test_the_packer_refuses_a_record_longer_than_its_rows_instead_of_cutting_it():
    """Behind the loader's check: a record that does not fit (corpus.json and its records
    disagree) stops packing; it is never silently cut."""
    records = [
        {"tokens": np.arange(1, n + 1), "loss_mask": np.ones(n, np.uint8), "task_id": 0}
        for n in (5, 9)
    ]
    source = grain.MapDataset.source(records).to_iter_dataset()
    batches = PackedBatchDataset(source, batch_size=2, seq_len=7, window=4, seed=0)
    with pytest.raises(ValueError, match="a record of 9 tokens does not fit rows of 7"):
        next(iter(batches))
    fits = PackedBatchDataset(source, batch_size=2, seq_len=8, window=4, seed=0)
    assert next(iter(fits))["tokens"].shape == (2, 8)


def test_restoring_the_state_continues_with_exactly_the_next_batch():
    corpus = pbmc_corpus()
    iterator = iter(host_batches(corpus, "train", OPTIONS, 0, 1))
    # Enough batches to cross several packing windows.
    for _ in range(7):
        next(iterator)
    state = iterator.get_state()
    expected = [next(iterator) for _ in range(3)]
    restored = iter(host_batches(corpus, "train", OPTIONS, 0, 1))
    restored.set_state(state)
    for want in expected:
        got = next(restored)
        for key in BATCH_KEYS:
            np.testing.assert_array_equal(got[key], want[key])


def _examples_seen(corpus, process_index, process_count):
    options = LoaderOptions(batch_size=2, seq_len=512, seed=1, num_epochs=1, pack_window=128)
    seen = []
    for batch in host_batches(corpus, "validation", options, process_index, process_count):
        seen += [batch["tokens"][r, s:e].tobytes() for r, s, e in _segments(batch)]
    return seen


def test_hosts_read_disjoint_shares_that_cover_the_split():
    corpus = pbmc_corpus()
    host0, host1 = _examples_seen(corpus, 0, 2), _examples_seen(corpus, 1, 2)
    source = data_source(corpus, "validation")
    everything = sorted(source[i]["tokens"][:-1].tobytes() for i in range(len(source)))
    assert sorted(host0 + host1) == everything
    assert abs(len(host0) - len(host1)) <= 1


def test_tasks_appear_in_batches_in_proportion_to_their_weights():
    corpus = pbmc_corpus()
    meta = read_metadata(corpus)
    options = LoaderOptions(batch_size=4, seq_len=512, seed=0, num_epochs=1)
    counts = collections.Counter()
    for batch in host_batches(corpus, "train", options, 0, 1):
        counts.update(batch["task_id"][r, s] for r, s, _ in _segments(batch))
    n = sum(counts.values())
    assert n == meta["splits"]["train"]
    for task_id, task in enumerate(meta["tasks"]):
        p = meta["task_probabilities"][task]
        assert abs(counts[task_id] / n - p) < 4 * np.sqrt(p * (1 - p) / n), task


def test_training_can_mix_tasks_with_its_own_weights():
    corpus = pbmc_corpus()
    tasks = read_metadata(corpus)["tasks"]
    first, second = tasks[0], tasks[-1]
    weights = {first: 3.0, second: 1.0}  # every other task is left out
    options = LoaderOptions(batch_size=4, seq_len=256, seed=0, task_weights=weights)
    counts = collections.Counter()
    for batch, _ in zip(host_batches(corpus, "train", options, 0, 1), range(40), strict=False):
        counts.update(tasks[batch["task_id"][r, s]] for r, s, _ in _segments(batch))
    assert set(counts) == {first, second}
    n = sum(counts.values())
    assert abs(counts[first] / n - 0.75) < 4 * np.sqrt(0.75 * 0.25 / n)
    # The per-task index matches the records, and bad weights are named.
    ids = task_index(corpus, "train")
    source = data_source(corpus, "train")
    assert all(tasks[ids[i]] == source[i]["task"].decode() for i in range(0, len(ids), 37))
    bad = LoaderOptions(batch_size=4, seq_len=256, task_weights={"dancing": 1.0})
    with pytest.raises(InputError, match=r"task_weights' names tasks \['dancing'\]"):
        host_batches(corpus, "train", bad, 0, 1)


def test_loader_places_global_arrays_on_the_mesh_and_restores():
    corpus = pbmc_corpus()
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    loader = CorpusLoader(corpus, "train", OPTIONS, mesh, PartitionSpec("data"))
    first = next(loader)
    assert isinstance(first["tokens"], jax.Array) and first["tokens"].shape == (4, 1024)
    assert first["tokens"].sharding.spec == PartitionSpec("data")
    non_pad = float((first["segment_ids"] > 0).mean())
    assert non_pad > 0.9
    state = loader.get_state()
    want = next(loader)
    again = CorpusLoader(corpus, "train", OPTIONS, mesh, PartitionSpec("data"))
    again.set_state(state)
    np.testing.assert_array_equal(np.asarray(next(again)["targets"]), np.asarray(want["targets"]))


@pytest.mark.slow
def test_worker_processes_deliver_batches_and_restore_exactly():
    corpus = pbmc_corpus()
    options = LoaderOptions(batch_size=4, seq_len=256, seed=3, pack_window=128, worker_count=2)
    iterator = iter(host_batches(corpus, "train", options, 0, 1))
    for _ in range(5):
        next(iterator)
    state = iterator.get_state()
    want = next(iterator)
    restored = iter(host_batches(corpus, "train", options, 0, 1))
    restored.set_state(state)
    got = next(restored)
    for key in BATCH_KEYS:
        np.testing.assert_array_equal(got[key], want[key])
