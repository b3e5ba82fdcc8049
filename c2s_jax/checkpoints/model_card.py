"""The model card (``README.md``) of an HF export of a bundle: what the model was trained
on and how to use it with transformers."""

import json

from c2s_jax.checkpoints.bundle import Bundle


def model_card(bundle: Bundle) -> str:
    """Markdown naming the corpus, its tasks and prompt formats, the trained length and
    the tokenizer, with the lines that load the export in transformers."""
    corpus = bundle.corpus
    datasets = corpus.get("datasets", {})
    lines = [
        "---",
        "library_name: transformers",
        "tags: [single-cell, cell2sentence, c2s-jax]",
        "---",
        "",
        f"# {type(bundle.config).__name__.removesuffix('Config')} trained on cell sentences",
        "",
        "Exported by c2s-jax (`c2s convert flax2hf`). Cells are written as cell sentences: "
        "gene symbols in descending order of expression.",
        "",
        "## Training data",
        "",
    ]
    if datasets:
        for name, facts in datasets.items():
            lines.append(
                f"- `{name}`: {facts.get('n_cells', '?')} cells, "
                f"{len(facts.get('genes', []))} genes ({facts.get('path', '')})"
            )
    else:
        lines.append("- no cell corpus recorded")
    tasks = corpus.get("task_probabilities", {})
    if tasks:
        lines += [
            "",
            "Tasks (share of examples) and prompt formats: the corpus's templates, "
            "`c2s_jax/corpus/prompts/`.",
        ]
        lines += [f"- {task}: {share:.2f}" for task, share in tasks.items() if share > 0]
    lines += [
        "",
        f"Sequence length in training: {bundle.trained_length or 'unknown'} tokens. "
        f"Tokenizer: {bundle.tokenizer.format} ({bundle.tokenizer.family} special tokens; "
        f"EOS id {bundle.tokenizer.eos_id}).",
    ]
    training = bundle.training_config
    if training:
        model, steps = training.get("model", {}), training.get("train", {}).get("steps", "?")
        optimizer, data = training.get("optimizer", {}), training.get("data", {})
        lines += [
            "",
            "## Training",
            "",
            f"Model `{model.get('name', '?')}` with overrides {model.get('overrides', {})}; "
            f"{steps} steps of {data.get('batch_size', '?')} x {data.get('seq_len', '?')} "
            f"tokens; peak learning rate {optimizer.get('learning_rate', '?')}. The whole "
            "experiment config:",
            "",
            "```json",
            json.dumps(training, indent=1, sort_keys=True),
            "```",
        ]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "tokenizer = AutoTokenizer.from_pretrained(PATH)",
        "model = AutoModelForCausalLM.from_pretrained(PATH)",
        'ids = tokenizer("Identify the cell type ...", return_tensors="pt").input_ids',
        "print(tokenizer.decode(model.generate(ids, max_new_tokens=64)[0]))",
        "```",
    ]
    if bundle.tokenizer.format == "sentencepiece":
        lines += [
            "",
            "`tokenizer.json` is a conversion of the SentencePiece model `tokenizer.model` "
            "that gives the same ids for every text, except that the literal text of a "
            "special token (`<s>`) is read as that token, as transformers' tokenizers do.",
        ]
    return "\n".join(lines) + "\n"
