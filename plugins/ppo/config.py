"""The ``ppo`` stage's recipe section, validated strictly like every other section."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from rlhf_plug.recipe import ComponentRef, DataRef, Strict
from rlhf_plug.stage import StageConfig
from rlhf_plug.policy.rewards import JudgeRef, RewardRef
from rlhf_plug.policy.generation import GenerationArgs

PositiveInt = Annotated[int, Field(gt=0)]


class PtxConfig(Strict):
    """PPO-ptx (InstructGPT eq. 2): ``coef`` · LM loss on pretraining batches, in the same update."""

    coef: Annotated[float, Field(ge=0)] = 0.0
    data: DataRef | None = Field(None, description="language-modelling text (a `text` column)")
    batch_size: PositiveInt = 4
    max_length: PositiveInt = 256


class PPOArgs(Strict):
    """Optimisation settings of the PPO loop."""

    steps: PositiveInt = 100
    batch_size: PositiveInt = Field(8, description="prompts per update, per process")
    shuffle: bool = Field(True, description="a new seeded order of the prompts every pass; false: file order")
    mini_batches: PositiveInt = 1
    ppo_epochs: PositiveInt = 1
    learning_rate: Annotated[float, Field(gt=0)] = 1e-4
    lr_scheduler: str = Field("constant", description="a transformers scheduler name: constant, linear, cosine, ...")
    warmup_steps: Annotated[int, Field(ge=0)] = 0
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    max_grad_norm: Annotated[float, Field(gt=0)] | None = 1.0
    gamma: Annotated[float, Field(ge=0, le=1)] = 1.0
    lam: Annotated[float, Field(ge=0, le=1)] = 0.95
    kl_estimator: Literal["k1", "k2", "k3"] = Field(
        "k1", description="per-token KL estimate (Schulman): k1 = -log r, k2 = (log r)^2/2, k3 = r - 1 - log r with "
        "r = pi_ref/pi. In the reward only k1 gives an unbiased policy gradient and a KL in nats for an adaptive "
        "target; in the loss (kl_penalty: loss) k2's gradient is that of KL(pi||pi_ref), k3's (GRPO's) that of "
        "KL(pi_ref||pi), and k1's is zero on average",
    )
    kl_penalty: Literal["reward", "loss"] = Field(
        "reward", description="where beta*KL acts: reward: -beta*KL_t in each token's reward (InstructGPT, Ziegler, "
        "TRL); loss: beta * mean KL_t added to the loss with its own gradient, no KL in the reward (GRPO)",
    )
    whiten_advantages: bool = True
    reward_norm: Literal["running", "frozen", "batch", "none"] = Field(
        "running", description="normalise the summed reward: running mean/std over all steps; frozen: mean/std of "
        "the first reward_norm_batches rollouts (the SFT policy's samples, as Ziegler et al. normalise once), then "
        "fixed; batch: each batch's own; none",
    )
    reward_norm_batches: PositiveInt = Field(4, description="with reward_norm frozen: rollouts whose rewards set the statistics")
    reward_clip: Annotated[float, Field(gt=0)] | None = 5.0
    missing_eos_penalty: float | None = Field(
        None, description="subtracted from the score of responses without EOS, after normalising and clipping "
        "(so in units of the normalised reward); TRL's TL;DR example uses 1.0",
    )
    value_model: Literal["trunk", "adapter"] = Field(
        "trunk", description="value head on the policy's hidden states, or its own LoRA adapter plus head"
    )
    max_prompt_length: PositiveInt = 256
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto", description="recompute trunk activations in backward: far less memory, one more forward pass; "
        "auto: only for batches whose activations would exceed activation_budget_gib",
    )
    merged_sampling: bool = Field(
        True, description="sample with the policy LoRA merged into temporary copies of the weights (faster decoding; "
        "samples can differ from unmerged sampling by float rounding); false: peft's unmerged forward",
    )
    packed_sampling: bool = Field(
        True, description="on a CPU in fp32, sample with every linear layer's weight packed once per rollout for "
        "oneDNN (generation about 15 % faster for SmolLM2-135M; float rounding as with merging); false: F.linear",
    )
    share_prompt_prefix: bool = Field(
        True, description="run the prompt prefix every row of a batch shares (e.g. a chat template's system prompt) "
        "once per forward pass, not once per row (checkpointed layers included)",
    )
    activation_budget_gib: Annotated[float, Field(gt=0)] = Field(
        0.5, description="with gradient_checkpointing auto: activations a training forward may keep before checkpointing "
        "(every n-th layer when that is enough)",
    )
    lean_activations: bool = Field(
        True, description="training forwards keep no RMSNorm output and 2 of a SwiGLU MLP's 4 intermediates for the "
        "backward pass, which recomputes them elementwise: 466 instead of 767 MiB for 8 x 78 tokens of SmolLM2-135M, "
        "gradients bit for bit the same",
    )
    release_freed_memory: bool = Field(
        False, description="in training forwards (before the LM head, and after), hand the CPU heap's freed pages "
        "back to the OS (glibc malloc_trim): 0.05-0.25 GiB lower and steadier peak RSS on CPU for about 6 % more "
        "time per update (page faults), so off by default",
    )
    logprob_gap_threshold: Annotated[float, Field(gt=0)] | None = Field(
        None, description="warn once when a step's logprob_gap_max (|sampler log-prob - trainer's old log-prob| over "
        "response tokens) exceeds this: the rollout drew from another distribution than the trainer scores. "
        "Default: 0.01 in fp32, 1.0 under bf16 autocast or 16-bit weights (measured: docs/ppo.md)",
    )
    logprob_gap_strict: bool = Field(False, description="stop with exit 2, instead of warning, above logprob_gap_threshold")
    importance_sampling: Literal["none", "truncated"] = Field(
        "none", description="truncated: weight each token's advantage by min(pi_old / p_sampler, "
        "importance_sampling_cap), correcting what sampling in bf16, 4-bit or with merged weights leaves (TIS)",
    )
    importance_sampling_cap: Annotated[float, Field(ge=1)] = 2.0
    eval_every: Annotated[int, Field(ge=0)] = Field(0, description="evaluate every N steps (0: before and after only)")
    eval_prompts: PositiveInt = Field(64, description="held-out prompts used per evaluation (at most)")
    save_every: Annotated[int, Field(ge=0)] = Field(0, description="checkpoint every N steps (0: never mid-stage)")
    keep_checkpoints: PositiveInt = 2
    bf16: bool | None = Field(None, description="bf16 autocast; default on where CUDA supports it")


class PPOStageConfig(StageConfig):
    prompts: DataRef = Field(description="prompt-only data (a `prompt` column, text or messages)")
    eval_prompts: DataRef | None = Field(None, description="held-out prompts; default: the prompts' eval split")
    reward: list[RewardRef] = Field(
        default_factory=lambda: [RewardRef(use="learned_rm")], min_length=1,
        description="reward functions; the reward is their weighted sum",
    )
    judges: list[JudgeRef] = Field(
        default_factory=list, description="reward functions used only in evaluation (e.g. a gold annotator)"
    )
    kl: ComponentRef = Field(default_factory=lambda: ComponentRef(use="adaptive"))
    loss: ComponentRef = Field(default_factory=lambda: ComponentRef(use="ppo_clip"))
    ptx: PtxConfig = Field(default_factory=PtxConfig)
    generation: GenerationArgs = Field(default_factory=GenerationArgs)
    evaluators: list[ComponentRef] = Field(
        default_factory=lambda: [ComponentRef(use="reward_stats"), ComponentRef(use="win_rate"), ComponentRef(use="samples")]
    )
    args: PPOArgs = Field(default_factory=PPOArgs)
