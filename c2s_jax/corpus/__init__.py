"""From cell sentences to a training corpus: the corpus config, the cells each split
draws, the tasks and their prompts, the tokenizer, and the TFDS records (written by one
process or an Apache Beam pipeline)."""
