#!/usr/bin/env bash
# Builds benchmarks/.venv-trl112: the TRL 1.12.0 reference environment (last TRL with a
# PPOTrainer, trl.experimental.ppo) used only by benchmarks/ppo_vs_trl112.py.
# Idempotent: re-running it on a complete venv only checks the pins.
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv-trl112
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first and pinned: a bare `torch` requirement would pull the CUDA wheels.
TORCH=torch==2.13.0
# trl 1.12.0 on the same transformers/peft/accelerate/datasets as the project's own environment,
# so that only the PPO implementation differs. (trl 1.12.0 also ran unchanged, same scores, on
# transformers 5.12.1, the release current when it came out.)
PINS=(trl==1.12.0 transformers==5.24.0 peft==0.21.2 accelerate==1.15.0 datasets==5.2.0)

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q "$TORCH"
"$VENV/bin/python" -m pip install -q "$TORCH" "${PINS[@]}"
"$VENV/bin/python" - <<'PY'
import importlib.metadata as m
print(" ".join(f"{p}=={m.version(p)}" for p in ("torch", "trl", "transformers", "peft", "accelerate", "datasets")))
PY
