"""Peak RSS of each phase of our PPO update, to see which one sets the process's peak.

    python benchmarks/ppo_phase_memory.py --policy runs/sft-rm/sft/model --reward runs/sft-rm/reward \
        --prompts PROMPTS.jsonl --updates 3 --out /tmp/mem.json

Takes ``ours_worker.py``'s arguments. Before each phase it resets the kernel's high-water mark
(``/proc/self/clear_refs``, Linux), and after it reads ``VmHWM``: the phase's own peak. Adds
``phase_peak_rss_gib`` (max over updates) and ``rss_before_gib`` to the worker's JSON.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

PEAKS: dict[str, float] = {}


def _status(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 2**20  # kB -> GiB
    raise KeyError(key)


def _measured(name_of, method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        name = name_of(args, kwargs)
        PEAKS.setdefault("rss_before_" + name, _status("VmRSS"))
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        try:
            return method(self, *args, **kwargs)
        finally:
            PEAKS[name] = max(PEAKS.get(name, 0.0), _status("VmHWM"))

    return wrapper


def patch() -> None:
    from rlhf_plug_plugins.ppo.loop import PPOLoop

    PPOLoop.generate = _measured(lambda a, k: "generation", PPOLoop.generate)
    PPOLoop.score = _measured(lambda a, k: "reward", PPOLoop.score)
    PPOLoop._forward = _measured(lambda a, k: f"forward:{a[0]}", PPOLoop._forward)
    PPOLoop.optimise = _measured(lambda a, k: "optimise (backward, step)", PPOLoop.optimise)


def main() -> None:
    import ours_worker

    patch()
    ours_worker.main()
    out = Path(sys.argv[sys.argv.index("--out") + 1])
    data = json.loads(out.read_text())
    data["phase_peak_rss_gib"] = {k: round(v, 3) for k, v in PEAKS.items()}
    out.write_text(json.dumps(data, indent=2))
    print(json.dumps(data["phase_peak_rss_gib"], indent=2), "\npeak", round(data["peak_rss_gib"], 3))


if __name__ == "__main__":
    main()
