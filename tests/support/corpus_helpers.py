"""Shared by the corpus tests: small configs, generated datasets, one cached corpus."""

import atexit
import functools
import hashlib
import shutil
import tempfile
import warnings
from pathlib import Path

import anndata
import ml_collections
import numpy as np
import pandas as pd
import scipy.sparse as sp
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from c2s_jax.config_loading import load_config
from c2s_jax.corpus.config import corpus_spec
from c2s_jax.corpus.records import TASK_INDEX_SUFFIX, build_corpus
from c2s_jax.demo import CORPUS_OVERRIDES

PBMC_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "corpus" / "pbmc68k_multitask.py"
SHIFTED_GENE = {"KO_A": "GENE5", "KO_B": "GENE7"}


def scratch_dir() -> Path:
    """A temporary folder removed when the test process ends."""
    path = Path(tempfile.mkdtemp(prefix="c2s_corpus_test_"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def shard_digests(corpus: Path) -> dict[str, str]:
    """sha256 of every file a build writes among a corpus's records (what byte-identical
    builds share); the task index a reweighting training run adds later is left out."""
    files = sorted(
        p
        for p in (corpus / "records").rglob("*")
        if p.is_file() and not p.name.endswith(TASK_INDEX_SUFFIX)
    )
    return {str(p.relative_to(corpus)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


# The main job's corpus shapes (all but its size): what the tests' models train on.
MAIN_JOB_SHAPES = tuple(o for o in CORPUS_OVERRIDES if not o.startswith("examples="))


def small_config(**overrides) -> ml_collections.ConfigDict:
    """The pbmc68k multi-task config in the main job's shapes (short sentences, rows of 256
    tokens), shrunk for tests, with `key=value` overrides."""
    config = load_config(PBMC_CONFIG, list(MAIN_JOB_SHAPES))
    config.examples = dict(train=600, validation=80, test=80)
    config.examples_per_part = 400
    config.tokenizer.training_examples = 300
    config.tokenizer.vocab_size = 800
    config.tokenizer.check_examples = 32
    for key, value in overrides.items():
        config.update_from_flattened_dict({key: value})
    return config


@functools.cache
def pbmc_corpus() -> Path:
    """A built corpus of the small pbmc68k config (built once per test process)."""
    out = scratch_dir() / "pbmc"
    build_corpus(corpus_spec(small_config()), out, progress=False)
    return out


def perturb_seq_adata(seed: int = 0, n_genes: int = 40) -> anndata.AnnData:
    """A Perturb-seq-like AnnData: 2 cell types x 2 batches, controls and 3 perturbations.

    Knockouts KO_A and KO_B raise GENE5 and GENE7 far above every other gene (known
    shifts); DRUG_X changes nothing. obs: cell_type, batch, perturbation, dose, time.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for cell_type in ("T cell", "B cell"):
        for batch in ("b1", "b2"):
            for perturbation, n in (("control", 12), ("KO_A", 8), ("KO_B", 8), ("DRUG_X", 6)):
                rows += [(cell_type, batch, perturbation)] * n
    obs = pd.DataFrame(rows, columns=["cell_type", "batch", "perturbation"])
    obs["dose"] = np.where(obs.perturbation == "DRUG_X", "10 uM", None)
    obs["time"] = "24 h"
    obs.index = [f"cell{i}" for i in range(len(obs))]
    counts = rng.poisson(3.0, (len(obs), n_genes)).astype(np.float32) + 1
    genes = [f"GENE{j}" for j in range(n_genes)]
    for perturbation, gene in SHIFTED_GENE.items():
        counts[obs.perturbation.to_numpy() == perturbation, genes.index(gene)] = 500
    return anndata.AnnData(X=sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=genes))


def perturb_dataset(path: str) -> dict:
    """The corpus config's dataset entry for a :func:`perturb_seq_adata` file at `path`."""
    return dict(
        name="perturb",
        path=path,
        cell_type_key="cell_type",
        organism="Homo sapiens",
        perturbation_key="perturbation",
        control_label="control",
        perturbation_type="knockout of",
        dose_key="dose",
        time_key="time",
        batch_key="batch",
    )


def spatial_adata(seed: int = 0, side: int = 8, n_genes: int = 30) -> anndata.AnnData:
    """Cells on a side x side grid (obsm['spatial']) from two donors, with a description."""
    rng = np.random.default_rng(seed)
    n = side * side
    counts = rng.poisson(2.0, (n, n_genes)).astype(np.float32) * (rng.random((n, n_genes)) < 0.7)
    counts[:, 0] += 1
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(n, 2)
    obs = pd.DataFrame(
        {
            "cell_type": rng.choice(["neuron", "astrocyte"], n),
            "donor": np.where(grid[:, 0] < side // 2, "d1", "d2"),
            "organism": "Mus musculus",
        },
        index=[f"spot{i}" for i in range(n)],
    )
    adata = anndata.AnnData(
        X=sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=[f"G{j}" for j in range(n_genes)])
    )
    adata.obsm["spatial"] = grid.astype(np.float64)
    adata.uns["description"] = "Spatial transcriptomics of mouse cortex from two donors"
    return adata


def neox_style_tokenizer(texts: list[str], path: Path, vocab_size: int = 600) -> Path:
    """A byte-level BPE with GPT-NeoX's pre-tokenizer, decoder and special tokens."""
    tokenizer = HFTokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|padding|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.save(str(path))
    return path


@functools.cache
def neox_corpus() -> Path:
    """The small pbmc68k corpus tokenized with a NeoX-style tokenizer.json."""
    folder = scratch_dir()
    from c2s_jax.sentences.embedded import pbmc68k_counts

    genes = list(pbmc68k_counts().var_names)
    texts = [" ".join(genes[i : i + 50]) for i in range(0, len(genes), 7)]
    texts += ["Identify the cell type of a human cell: CD3D CD3E. T cell."] * 20
    path = neox_style_tokenizer(texts, folder / "tokenizer.json")
    config = small_config(**{"tokenizer.path": str(path), "tokenizer.family": "pythia"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_corpus(corpus_spec(config), folder / "corpus", progress=False)
    assert not [w for w in caught if "gene-table tokenization differs" in str(w.message)]
    return folder / "corpus"
