"""transformers is the client: a trained bundle of each tokenizer family, exported with
`c2s convert flax2hf`, loads with AutoTokenizer and AutoModelForCausalLM; the tokenizer
encodes held-out corpus prompts to exactly the ids the corpus holds, and greedy
`generate` continues them token for token as `c2s generate` does, stopping at EOS.

- gemma: our SentencePiece tokenizer (exported as tokenizer.model and a converted
  tokenizer.json that opens texts with BOS);
- pythia: a GPT-NeoX-style byte-level BPE tokenizer.json (no BOS)."""

import json

import numpy as np
import pytest

from c2s_jax.checkpoints.bundle import load_bundle
from c2s_jax.cli import main
from c2s_jax.corpus.records import data_source
from c2s_jax.inference.generation import generate_cells
from c2s_jax.inference.sampler import SamplingParams
from tests.support.corpus_helpers import neox_corpus, pbmc_corpus
from tests.support.trained_model import neox_pythia_run, pbmc_workdir

FAMILIES = {
    "gemma": (pbmc_workdir, pbmc_corpus, ["tokenizer.model", "tokenizer.json"]),
    "pythia": (neox_pythia_run, neox_corpus, ["tokenizer.json"]),
}


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_transformers_serves_the_export_with_its_tokenizer(family, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_of, corpus_of, tokenizer_files = FAMILIES[family]
    run, out = run_of(), tmp_path / "hf"
    assert main(["convert", "flax2hf", str(run), str(out)]) == 0
    bundle = load_bundle(run)
    bos, eos = bundle.tokenizer.bos_id, bundle.tokenizer.eos_id
    assert all((out / name).exists() for name in tokenizer_files)
    config = json.loads((out / "config.json").read_text())
    assert config["eos_token_id"] == eos and config.get("bos_token_id") == bos
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == eos
    card = (out / "README.md").read_text()
    assert "cells" in card and f"x {bundle.trained_length} tokens" in card

    hf_tokenizer = AutoTokenizer.from_pretrained(out)
    hf_model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    source = data_source(corpus_of(), "test")
    for index in range(4):  # held-out prompts: the ids the corpus holds, BOS included
        record = source[index]
        prompt_ids = np.asarray(record["tokens"])[np.asarray(record["loss_mask"]) == 0]
        assert (prompt_ids[0] == bos) == (bos is not None)
        prompt = bundle.tokenizer.decode(prompt_ids)
        assert hf_tokenizer(prompt)["input_ids"] == prompt_ids.tolist()

        # Greedy continuations agree token for token, EOS included when reached; both
        # sides see the prompt cut to the trained length.
        cut = prompt_ids[: bundle.trained_length]
        ours = generate_cells(
            bundle,
            [prompt],
            1,
            SamplingParams(max_new_tokens=16, temperature=0.0),
            constrain=False,
            raw=True,
            progress=False,
            truncate=True,
        ).completions[0]
        theirs = hf_model.generate(
            torch.tensor([cut.tolist()]), max_new_tokens=16, do_sample=False
        )[0, len(cut) :].tolist()
        assert list(ours.tokens) == theirs[: len(ours.tokens)]
        if theirs[-1] == eos or len(theirs) < 16:
            assert ours.finish == "eos" and theirs[-1] == eos
        assert hf_tokenizer.decode(theirs, skip_special_tokens=True).strip() == ours.text.strip()
