"""Reinforcement learning on verifiable rewards: reward functions and the GRPO objective."""
