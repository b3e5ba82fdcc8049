"""`c2s plan --compile`: a config compiled for the TPU slice it names, without the TPU
(training, GRPO and decoding), and what the compiled program's HLO says about memory,
FLOPs and communication."""
