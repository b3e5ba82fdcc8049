"""`c2s corpus build --beam`: the same TFDS builder drawn on Apache Beam workers (the local
DirectRunner with 2 worker processes) writes the records a single process writes."""

import pytest

from c2s_jax.cli import main
from c2s_jax.corpus.config import corpus_spec
from c2s_jax.corpus.records import build_corpus, read_metadata
from tests.support.corpus_helpers import (
    PBMC_CONFIG,
    pbmc_corpus,
    scratch_dir,
    shard_digests,
    small_config,
)

pytest.importorskip("apache_beam")


@pytest.mark.slow
@pytest.mark.integration
def test_a_beam_build_writes_the_records_of_a_single_process_build():
    out = scratch_dir() / "beam"
    spec = corpus_spec(small_config())
    meta = build_corpus(spec, out, progress=False, beam=True, beam_options=["direct_num_workers=2"])
    assert shard_digests(out) == shard_digests(pbmc_corpus())
    single = read_metadata(pbmc_corpus())
    assert meta["splits"] == single["splits"] and meta["counts"] == single["counts"]
    assert not list((out / "records").glob("*.*.counts.json"))  # merged into each part's


def test_a_beam_option_that_is_not_key_value_is_named(capsys):
    args = ["corpus", "build", "--config", str(PBMC_CONFIG), "--out", str(scratch_dir() / "x")]
    assert main([*args, "--beam", "--beam-option", "workers"]) == 2
    assert "--beam-option 'workers': expected KEY=VALUE" in capsys.readouterr().err
