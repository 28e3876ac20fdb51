"""Reward-model training on rankings: ``trl.RewardTrainer`` with one forward pass per distinct answer.

InstructGPT trains on all K·(K−1)/2 pairs of a ranking but scores each of the K
answers once. TRL's RewardTrainer scores both sides of every pair, so a batch of
pairs from one ranking scores the same answer many times. We keep TRL's loss,
collator and metrics and only deduplicate the sequences inside a batch before the
forward pass; with pairs of one prompt kept together (sequential sampling over
rankings in random order) that removes most of the repeated work.
"""

from __future__ import annotations

from types import SimpleNamespace

from trl import RewardTrainer


class DedupForward:
    """Calls ``model`` once per distinct (input_ids, attention_mask) row and scatters the logits back."""

    def __init__(self, model):
        self.model = model
        self.rows_in = self.rows_run = 0

    def __call__(self, input_ids, attention_mask, **kwargs):
        import torch

        key = torch.cat([input_ids, attention_mask.to(input_ids.dtype)], dim=1)
        unique, inverse = torch.unique(key, dim=0, return_inverse=True)
        width = input_ids.shape[1]
        out = self.model(input_ids=unique[:, :width], attention_mask=unique[:, width:].to(attention_mask.dtype), **kwargs)
        self.rows_in += input_ids.shape[0]
        self.rows_run += unique.shape[0]
        return SimpleNamespace(logits=out.logits[inverse])


class RankingRewardTrainer(RewardTrainer):
    """RewardTrainer whose forward pass scores each distinct answer in a batch once."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rows_in = self.rows_run = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        forward = DedupForward(model)
        result = super().compute_loss(forward, inputs, return_outputs, num_items_in_batch)
        self.rows_in += forward.rows_in
        self.rows_run += forward.rows_run
        return result

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if "length" not in self._signature_columns:  # kept for the length-grouped sampler; the collator ignores it
            self._signature_columns = [*self._signature_columns, "length"]

    @property
    def dedup_ratio(self) -> float:
        """Sequences the plain RewardTrainer would have scored per sequence we scored."""
        return self.rows_in / self.rows_run if self.rows_run else 1.0
