"""Which prompts each step uses: a seeded permutation per pass over the data.

The order depends only on (seed, step), so a resumed run sees exactly the
prompts an uninterrupted run would have seen: none repeated, none skipped.
"""

from __future__ import annotations

import torch


class PromptSchedule:
    def __init__(self, num_rows: int, per_process: int, num_processes: int, seed: int, shuffle: bool = True):
        self.shuffle = shuffle
        self.num_rows = num_rows
        self.per_process = per_process
        self.num_processes = num_processes
        self.seed = seed

    def _order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_rows))
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_rows, generator=generator).tolist()

    def global_indices(self, step: int) -> list[int]:
        """Row numbers for 0-based ``step`` across all processes."""
        size = self.per_process * self.num_processes
        start = step * size
        out: list[int] = []
        while len(out) < size:
            epoch, offset = divmod(start + len(out), self.num_rows)
            out.extend(self._order(epoch)[offset : offset + size - len(out)])
        return out

    def indices(self, step: int, process_index: int) -> list[int]:
        rows = self.global_indices(step)
        return rows[process_index * self.per_process : (process_index + 1) * self.per_process]
