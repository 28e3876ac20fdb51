"""Sampling responses for rollouts and held-out evaluation: left-padded prompts in, EOS-truncated
responses out, every token drawn by inverse CDF with its log-probability kept, and the model's own
``generation_config.json`` shaping nothing."""
