"""The PPO engine's speed and memory features, each exact or off where it would not be (docs/ppo.md):
a shared prompt prefix, merged and packed sampling weights, lean activations, activation checkpointing,
GQA attention on CPU, and returning freed heap pages."""
