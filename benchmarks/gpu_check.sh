#!/usr/bin/env bash
# GPU check (one CUDA machine, no network): every stage (sft -> reward -> ppo) for a few steps on a
# random-init Llama of about 1B parameters (built from a config: no weights travel), in 4-bit (QLoRA)
# and in bf16 (LoRA), then the same recipe in bf16 under configs/accelerate/deepspeed_zero2.yaml with one
# process. Per stage it records peak GPU memory (torch.cuda.max_memory_allocated) and tokens/s
# (TRL stages: the Trainer's train_tokens_per_second over non-padding input tokens; PPO: generated
# tokens/s = batch x mean response length / step time), and for PPO the largest sampler-vs-trainer log-prob gap
# of any step (logprob_gap_max; docs/ppo.md). Writes $OUT/gpu_check.json and prints a table.
#
# The GPU machine has torch, transformers, peft and accelerate, but not trl, bitsandbytes, datasets,
# deepspeed or our small dependencies. Download them HERE first (PyPI is reachable here), into the
# git-ignored .whl/ folder at the repository root, for the GPU machine's Python (check its version):
#   pip download --no-deps --only-binary :all: --python-version 3.11 --platform manylinux_2_28_x86_64 -d .whl \
#       trl==1.16.0 datasets==5.2.0 bitsandbytes==0.50.2 pyarrow==26.0.1 dill==0.4.1 multiprocess==0.70.19 \
#       xxhash==4.1.0 fsspec==2026.9.0 pandas==3.1.1 python-dateutil pluggy==1.7.0 rich==15.0.0 markdown-it-py \
#       mdurl pygments pydantic==2.14.4 pydantic-core annotated-types typing-inspection gguf \
#       hjson msgpack ninja py-cpuinfo einops psutil            # (pin the unpinned ones from constraints.txt)
#   pip download --no-deps --no-binary deepspeed -d .whl deepspeed   # an sdist only; built below without ops
# then `pip install --dry-run --no-index --find-links .whl ...` (the line below) in a fresh venv with torch,
# transformers, peft and accelerate shows anything still missing. Carry it:
# run(command="bash benchmarks/gpu_check.sh", carry=[".whl"]); carried paths are limited to 64 MiB in all
# (`du -sh .whl`; bitsandbytes and pyarrow are the big ones): if it is over, carry the 4-bit half separately.
# Usage: bash benchmarks/gpu_check.sh [STEPS]   (default 4 steps a stage)
set -uo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-4}
OUT=${OUT:-benchmarks/gpu_out}
WORK=$(mktemp -d)
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false \
  PIP_DISABLE_PIP_VERSION_CHECK=1 RLHF_PLUG_DISABLE_PLUGIN_AUTOLOAD=1 NO_COLOR=1 COLUMNS=200

if [ -d .whl ]; then
  python -m pip install -q --no-index --find-links .whl trl datasets bitsandbytes pluggy rich pydantic gguf pyyaml
  DS_BUILD_OPS=0 python -m pip install -q --no-index --find-links .whl --no-build-isolation deepspeed \
    || echo "deepspeed not installed: the ZeRO-2 run will fail"
fi
# rlhf-plug from this checkout without installing it (no setuptools needed): its two mapped packages as links.
ln -s "$PWD/plugins" "$WORK/rlhf_plug_plugins" && ln -s "$PWD/recipes" "$WORK/rlhf_plug_recipes"
export PYTHONPATH="$PWD:$WORK:$WORK/probe${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

# 1. The model: a small byte-level BPE tokenizer trained on the built-in data (as the tests' tiny model)
#    and a TinyLlama-1.1B-shaped random-init Llama in bf16.
python - "$WORK/model" <<'PY'
import sys

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

target = sys.argv[1]
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
texts = [line for name in ("demos", "rankings", "prompts", "pretrain") for line in open(f"plugins/data/builtin_data/{name}.jsonl")]
tok.train_from_iterator(texts, trainers.BpeTrainer(
    vocab_size=2048, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                    bos_token="<|im_start|>")
tokenizer.chat_template = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
config = LlamaConfig(
    vocab_size=len(tokenizer), hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
    num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048, tie_word_embeddings=False,
    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
)
torch.manual_seed(0)
with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
    model = LlamaForCausalLM(config).to(torch.bfloat16)
print(f"random-init Llama: {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters")
model.save_pretrained(target, safe_serialization=True)
tokenizer.save_pretrained(target)
PY

# 2. A plugin that measures each stage: peak memory from its start, tokens/s from its step metrics.
mkdir -p "$WORK/probe"
cat > "$WORK/probe/gpu_probe.py" <<'PY'
import json, os, time
import torch
from rlhf_plug import hookimpl

RECORD, SEEN = os.environ["GPU_CHECK_RECORD"], {}

@hookimpl
def rlhf_stage_start(stage):
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    SEEN.update(tokens=0.0, seconds=0.0, tps=None, gap=None, start=time.monotonic())

@hookimpl
def rlhf_step_end(stage, step, metrics):
    if "train_tokens_per_second" in metrics:  # TRL: since training started, non-padding input tokens
        SEEN["tps"] = metrics["train_tokens_per_second"]
    if "time/step" in metrics:  # PPO: generated tokens of the global batch
        SEEN["tokens"] += stage.config.args.batch_size * metrics.get("response_length", 0.0)
        SEEN["seconds"] += metrics["time/step"]
    if metrics.get("logprob_gap_max") is not None:  # PPO: does the sampler draw what the trainer scores?
        SEEN["gap"] = max(SEEN["gap"] or 0.0, metrics["logprob_gap_max"])

@hookimpl
def rlhf_stage_end(stage, results):
    tps = SEEN["tps"] if SEEN["tps"] is not None else (SEEN["tokens"] / SEEN["seconds"] if SEEN["seconds"] else None)
    row = {"run": os.environ["GPU_CHECK_RUN"], "stage": stage.name, "steps": results.get("steps"),
           "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
           "tokens_per_s": None if tps is None else round(tps, 1),
           "tokens": "generated" if stage.kind == "ppo" else "input", "stage_s": round(time.monotonic() - SEEN["start"], 1),
           "logprob_gap_max": SEEN["gap"]}
    with open(RECORD, "a") as fh:
        fh.write(json.dumps(row) + "\n")
PY

# 3. The recipe: each stage STEPS steps on the built-in data.
cat > "$WORK/gpu.yaml" <<YAML
name: gpu-check
model: $WORK/model
output_dir: $WORK/runs
seed: 0
plugins: [gpu_probe]
stages:
  - sft:
      data: {use: builtin, with: {name: demos}, eval_fraction: 0.0}
      args: {max_steps: $STEPS, per_device_train_batch_size: 8, max_length: 256, include_num_input_tokens_seen: non_padding}
  - reward:
      data: {use: builtin, with: {name: rankings}, eval_fraction: 0.0}
      evaluators: []
      args: {max_steps: $STEPS, per_device_train_batch_size: 8, max_length: 256, include_num_input_tokens_seen: non_padding}
  - ppo:
      prompts: {use: builtin, with: {name: prompts}, eval_fraction: 0.0}
      reward: [{use: learned_rm}]
      generation: {max_new_tokens: 64}
      args: {steps: $STEPS, batch_size: 8, save_every: 0}
YAML

RECORD="$OUT/stages.jsonl"; : > "$RECORD"
status=0
run() {  # NAME, then the command's arguments
  local name=$1; shift
  echo "=== $name"
  GPU_CHECK_RECORD="$RECORD" GPU_CHECK_RUN="$name" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "{\"run\": \"$name\", \"exit\": $rc}" >> "$RECORD"
  [ $rc -eq 0 ] || { status=1; tail -5 "$OUT/$name.log"; }
}
run 4bit python -m rlhf_plug run "$WORK/gpu.yaml" --overwrite --set quantization=4bit
run bf16 python -m rlhf_plug run "$WORK/gpu.yaml" --overwrite --set quantization=none
run zero2-1proc python -m accelerate.commands.launch --config_file configs/accelerate/deepspeed_zero2.yaml \
  --num_processes 1 -m rlhf_plug run "$WORK/gpu.yaml" --overwrite --set quantization=none

python - "$RECORD" "$OUT/gpu_check.json" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
json.dump(rows, open(sys.argv[2], "w"), indent=2)
print(f"{'run':<12} {'stage':<8} {'steps':>5} {'peak GiB':>9} {'tokens/s':>10}  tokens     stage s  logprob gap max")
for r in rows:
    if "stage" in r:
        gap = "" if r.get("logprob_gap_max") is None else f"{r['logprob_gap_max']:.2g}"
        print(f"{r['run']:<12} {r['stage']:<8} {r['steps']!s:>5} {r['peak_gib']:>9} {r['tokens_per_s']!s:>10}  {r['tokens']:<10} {r['stage_s']:>7}  {gap}")
    else:
        print(f"{r['run']:<12} exit {r['exit']}")
PY
rm -rf "$WORK"
exit $status
