"""Scores and embeddings against the model's plain forward pass."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from c2s_jax.checkpoints.bundle import load_bundle
from c2s_jax.inference.embeddings import CellEmbedder
from c2s_jax.inference.scoring import Scorer
from tests.inference.helpers import VOCAB, tiny_parts
from tests.support.trained_model import pbmc_workdir


def test_scores_are_the_forward_pass_log_softmax_whatever_the_padding():
    parts, params = tiny_parts("pythia_tiny")
    model = nnx.merge(parts.graphdef, params)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(2, VOCAB, n).astype(np.int32) for n in (1, 5, 9)]
    texts = [rng.integers(2, VOCAB, n).astype(np.int32) for n in (4, 1, 7)]
    scored = Scorer(parts, params).score_tokens(prompts, texts, batch_size=2)
    for prompt, text, result in zip(prompts, texts, scored, strict=True):
        row = np.concatenate([prompt, text])
        logp = jax.nn.log_softmax(model(jnp.asarray(row)[None])[0], axis=-1)
        expected = [logp[len(prompt) - 1 + i, t] for i, t in enumerate(text)]
        np.testing.assert_allclose(result.logprobs, expected, atol=1e-5)
        np.testing.assert_array_equal(result.tokens, text)


def test_cell_embedding_is_the_mean_hidden_state_over_gene_tokens():
    bundle = load_bundle(pbmc_workdir())
    embedder = CellEmbedder(bundle, top_k=10, batch_size=4)
    genes = bundle.dataset()["genes"]
    cells = [genes[:10], genes[100:103], ["NOT_A_GENE", *genes[5:8]]]
    embedded = embedder(cells)
    rows, unknown = embedder.token_rows(cells)
    np.testing.assert_array_equal(unknown, [0, 0, 1])
    for row, vector in zip(rows, embedded, strict=True):
        hidden, _ = bundle.model.hidden_states(jnp.asarray(row)[None])
        expected = np.asarray(hidden[0, 1:]).mean(axis=0)  # BOS excluded
        np.testing.assert_allclose(vector, expected, atol=1e-4, rtol=1e-4)
