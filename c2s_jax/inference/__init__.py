"""Using a trained model: prompts as token ids, the sampler (prefill and decode over the KV
cache), the gene constraint on generated cells, generation of cells, log-likelihood
scoring, cell embeddings, reading generation requests and annotating an AnnData."""
