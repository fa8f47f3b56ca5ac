"""The reward model: Bradley-Terry training with TRL's RewardTrainer, and batched scoring.

Training data each round is every preference pair collected so far: the shipped seed pairs plus, from every round,
pairs the pipeline derives from verifier outcomes (a verified candidate over a failed one for the same prompt).
Rankings of three or more responses (best first, ties allowed) become all their pairwise comparisons
(:func:`ranking_to_pairs`). Conversations are rendered with the RM's own tokenizer and chat template, from
``messages``: never policy token ids.

Loss: plain Bradley-Terry, ``-log sigmoid(r_chosen - r_rejected)``. With ``reward_model.use_margin`` every pair
contributes ``-log sigmoid(r_chosen - r_rejected - margin)`` (TRL's RewardTrainer reads a ``margin`` column), with the
margin from :func:`pair_margin`: a pair's own numeric ``margin`` field, else ``VERIFIER_MARGIN`` (1.0) for
verifier-derived pairs (source ``round-N``: pass over fail), else 0.0 (seed pairs: plain Bradley-Terry).

A held-out slice measures pairwise accuracy (:func:`split_heldout`: groups of pairs linked by a prompt or a response
text go to one side, so held-out pairs share neither with training pairs), reported per source (seed, each round's
verifier pairs, synthetic negatives); :func:`check_heldout_accuracy` stops the round when the accuracy on the real
(non-synthetic) held-out pairs is below ``reward_model.min_heldout_accuracy``. Pairs longer than
``reward_model.max_length`` are left out before training and counted (``dropped_too_long``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from statistics import NormalDist

from alignment.config import RewardModelConfig
from alignment.hardware import torch_dtype
from alignment.models import load_chat_tokenizer
from alignment.records import candidate_order, write_jsonl
from alignment.train_common import (
    LengthSortedSampler,
    args_dtype,
    is_main_process,
    large_allocations_on_heap,
    peft_lora,
    prepare_training,
    save_merged,
    tensorboard_callbacks,
    training_args,
    training_dataset,
    training_dtype,
    use_cuda,
)
from reward.select import normalise_text

log = logging.getLogger(__name__)

VERIFIER_MARGIN = 1.0
"""Bradley-Terry margin of a verifier-derived pair (a verified response over a failed one), used with use_margin."""
FEW_HELDOUT_PAIRS = 10
"""Below this many held-out pairs the accuracy floor is still applied, but its message warns the estimate is noisy."""


class RewardModelTooWeak(ValueError):
    """The trained reward model's held-out pairwise accuracy is below ``reward_model.min_heldout_accuracy``."""


def _groups(ranking: Sequence[str | Sequence[str]], what: str) -> list[list[str]]:
    groups = []
    for k, entry in enumerate(ranking):
        group = [entry] if isinstance(entry, str) else list(entry)
        if not group or not all(isinstance(x, str) for x in group):
            raise ValueError(f"{what}[{k}] must be a string or a non-empty list of strings (a tie), got {entry!r}")
        groups.append(group)
    return groups


def ranking_to_pairs(
    prompt_messages: list[dict],
    ranked_responses: Sequence[str | Sequence[str]],
    *,
    pair_id_prefix: str,
    capability: str,
    source: str,
    response_ids: Sequence[str | Sequence[str]] | None = None,
    margin_per_rank: float | None = None,
) -> list[dict]:
    """Every pairwise comparison of a ranking: each response over each response in a lower-ranked group.

    ``ranked_responses`` is best first; an entry that is a list of strings is a tie group, whose members are never
    paired with each other. Pairs come in ranking order (for ranks i < j: i over j, i ascending, then j ascending)
    and pairs whose two texts are identical after whitespace normalisation are skipped. Each pair is a record like
    :func:`verifier_pairs` makes: ``pair_id, capability, messages, chosen, rejected, source``, where pair_id is
    ``f"{pair_id_prefix}{a}>{b}"`` and a, b label the two responses: their entries in ``response_ids`` (same shape as
    the ranking), by default their positions in the flattened ranking (0, 1, ...). With ``margin_per_rank`` each pair
    also carries ``margin = margin_per_rank * (number of tie groups between them, adjacent = 1)``.
    """
    groups = _groups(ranked_responses, "ranked_responses")
    if response_ids is None:
        flat = iter(range(sum(len(g) for g in groups)))
        labels = [[str(next(flat)) for _ in g] for g in groups]
    else:
        labels = _groups(response_ids, "response_ids")
        if [len(g) for g in labels] != [len(g) for g in groups]:
            raise ValueError("response_ids must have the same shape as ranked_responses")
    ranked = [(gi, label, text) for gi, g in enumerate(groups) for label, text in zip(labels[gi], g, strict=True)]
    pairs = []
    for i, (gi, label_i, better) in enumerate(ranked):
        for gj, label_j, worse in ranked[i + 1 :]:
            if gj == gi or normalise_text(better) == normalise_text(worse):
                continue
            pair = {
                "pair_id": f"{pair_id_prefix}{label_i}>{label_j}",
                "capability": capability,
                "messages": prompt_messages,
                "chosen": better,
                "rejected": worse,
                "source": source,
            }
            if margin_per_rank is not None:
                pair["margin"] = margin_per_rank * (gj - gi)
            pairs.append(pair)
    return pairs


def verifier_pairs(
    prompts: dict[str, dict], candidates: list[dict], source: str, max_per_prompt: int | None = 2
) -> list[dict]:
    """Preference pairs from verifier outcomes: for each prompt, passing candidates over failing ones.

    ``prompts`` maps prompt_id -> prompt record; ``candidates`` carry ``prompt_id``, ``candidate_id``, ``text`` and
    ``verified`` (True/False/None). Candidates without a verifier verdict (None) make no pairs. Per prompt, the
    candidates form a two-level ranking (every passing one over every failing one, see :func:`ranking_to_pairs`),
    with pair_id ``"{good candidate_id}>{bad candidate_id}"`` and margin ``VERIFIER_MARGIN``; identical texts are
    skipped. The result does not depend on the order of ``candidates``. With ``max_per_prompt`` (None: all pass x
    fail pairs) the first that many are kept in a fixed order that spreads over candidates: pass i with fail i
    first (candidate_id order), then pass i with fail i+1, and so on.
    """
    by_prompt: dict[str, list[dict]] = {}
    for c in candidates:
        by_prompt.setdefault(c["prompt_id"], []).append(c)
    pairs = []
    for pid in sorted(by_prompt):
        cands = sorted(by_prompt[pid], key=lambda c: candidate_order(c["candidate_id"]))
        # an off-topic pass is neither side: it satisfied the constraints without answering the prompt
        passed = [c for c in cands if c["verified"] is True and not list(c.get("verifier_flags") or [])]
        failed = [c for c in cands if c["verified"] is False]
        if not passed or not failed:
            continue
        prompt = prompts[pid]
        found = ranking_to_pairs(
            prompt["messages"],
            [[c["text"] for c in passed], [c["text"] for c in failed]],
            response_ids=[[c["candidate_id"] for c in passed], [c["candidate_id"] for c in failed]],
            pair_id_prefix="",
            capability=prompt["capability"],
            source=source,
            margin_per_rank=VERIFIER_MARGIN,
        )
        by_id = {p["pair_id"]: p for p in found}
        # Diagonal order (pass, fail): (0, 0), (1, 1), ..., then (0, 1), (1, 2), ... (fail index mod #fails): spreads
        # a capped selection over candidates; with no cap every pass x fail pair appears exactly once.
        order = [(i, (i + d) % len(failed)) for d in range(len(failed)) for i in range(len(passed))]
        kept = [
            by_id[key] for i, j in order if (key := f"{passed[i]['candidate_id']}>{failed[j]['candidate_id']}") in by_id
        ]
        pairs.extend(kept if max_per_prompt is None else kept[:max_per_prompt])
    return pairs


def pair_margin(pair: dict) -> float:
    """The Bradley-Terry margin of a pair when ``use_margin`` is on (see the module docstring)."""
    margin = pair.get("margin")
    if isinstance(margin, int | float) and not isinstance(margin, bool) and math.isfinite(margin):
        return float(margin)
    return VERIFIER_MARGIN if str(pair.get("source", "")).startswith("round-") else 0.0


def _prompt_key(pair: dict) -> str:
    return normalise_text("\n".join(m["content"] for m in pair["messages"] if m["role"] != "assistant"))


def split_heldout(pairs: list[dict], fraction: float) -> tuple[list[dict], list[dict]]:
    """(train, held-out): whole groups of real pairs go to one side, where a group is every pair linked to another
    by the same prompt or the same response text (chosen or rejected, whitespace-normalised). No held-out pair shares
    a prompt or a response with a training pair, so held-out accuracy measures preferences the RM did not see: split
    by pair id, 5 of 23 held-out seed pairs shared a prompt with training pairs and 12 a rejected text.

    The split is stratified by source (:func:`source_kind` of the group's pairs; seed before rounds): of each source's
    groups, ordered by a stable hash of their smallest prompt, the first ``round(fraction * n)`` are held out, at
    least one where the source has ``1 / fraction`` groups or more. So a round's ~20 verifier prompts still give
    held-out pairs of their own, and a pair's side depends on its prompt, not on list order or on the synthetic
    pairs drawn. Synthetic pairs do not link groups (an "other-prompt" pair would join two prompts): each follows the
    side of the group its prompt and texts belong to, is its own group when they belong to none, and is left out
    when they belong to groups on both sides."""
    real = [i for i, p in enumerate(pairs) if source_kind(p.get("source")) != "synthetic"]
    parent = {i: i for i in real}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def keys(p: dict) -> tuple[str, ...]:
        return (f"p:{_prompt_key(p)}", f"r:{normalise_text(p['chosen'])}", f"r:{normalise_text(p['rejected'])}")

    first: dict[str, int] = {}
    for i in real:
        for key in keys(pairs[i]):
            parent[find(i)] = find(first.setdefault(key, i))
    groups: dict[int, list[int]] = {}
    for i in real:
        groups.setdefault(find(i), []).append(i)
    synthetic_alone: dict[str, list[int]] = {}
    attached: dict[int, int] = {}  # synthetic pair -> the real group it joins
    for i, p in enumerate(pairs):
        if i in parent:
            continue
        roots = {find(first[k]) for k in keys(p) if k in first}
        if len(roots) == 1:
            attached[i] = roots.pop()
        elif not roots:
            synthetic_alone.setdefault(_prompt_key(p), []).append(i)
        else:
            attached[i] = -1  # texts of several groups: decided below, once the sides are known
    by_source: dict[str, list[tuple[str, list[int]]]] = {}
    for members in [*groups.values(), *synthetic_alone.values()]:
        kinds = {source_kind(pairs[i].get("source")) for i in members}
        kind = "seed" if "seed" in kinds else min(kinds)
        key = min(_prompt_key(pairs[i]) for i in members)
        by_source.setdefault(kind, []).append((hashlib.sha256(key.encode()).hexdigest(), members))
    held: set[int] = set()
    for ranked in by_source.values():
        ranked.sort()
        n = round(fraction * len(ranked))
        if n == 0 and fraction > 0 and len(ranked) * fraction >= 1 - 1e-9:
            n = 1
        for _, members in ranked[:n]:
            held.update(members)
    left_out: set[int] = set()
    for i, root in attached.items():
        if root >= 0:
            if root in held:
                held.add(i)
            continue
        sides = {find(first[k]) in held for k in keys(pairs[i]) if k in first}
        if sides == {True}:
            held.add(i)
        elif sides != {False}:
            left_out.add(i)
    train = [p for i, p in enumerate(pairs) if i not in held and i not in left_out]
    return train, [p for i, p in enumerate(pairs) if i in held]


def source_kind(source: str | None) -> str:
    """A pair source as reported: "seed", "round-N" (verifier pairs of round N), "synthetic", or "unknown"."""
    source = source or "unknown"
    return "synthetic" if source.startswith("synthetic") else source


def _conversation(messages: list[dict], response: str) -> list[dict]:
    return [
        *({"role": m["role"], "content": m["content"]} for m in messages),
        {"role": "assistant", "content": response},
    ]


def _to_trainer_rows(pairs: list[dict], use_margin: bool) -> list[dict]:
    """RewardTrainer rows: chosen/rejected conversations, plus a ``margin`` column only when ``use_margin``."""
    rows = []
    for p in pairs:
        row = {
            "chosen": _conversation(p["messages"], p["chosen"]),
            "rejected": _conversation(p["messages"], p["rejected"]),
        }
        if use_margin:
            row["margin"] = pair_margin(p)
        rows.append(row)
    return rows


def accuracy_interval(accuracy: float, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a pairwise accuracy measured on ``n`` pairs."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    center = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def check_heldout_accuracy(metrics: dict, floor: float | None, confidence: float | None = None) -> None:
    """Raise RewardModelTooWeak when ``metrics["heldout_accuracy"]`` is below ``floor`` (None: no floor); with a
    ``confidence``, only when its whole interval (Wilson) is below the floor, as the promotion gate asks a drop to be
    significant. A point estimate below the floor within the noise logs a warning and the round goes on.

    ``metrics`` is what :func:`train_reward_model` returns. Without held-out pairs there is nothing to measure: a
    warning is logged and the round goes on.
    """
    if floor is None:
        return
    accuracy, n = metrics.get("heldout_accuracy"), int(metrics.get("heldout_pairs") or 0)
    if accuracy is None:
        log.warning(
            "reward model: no held-out pairs, so the accuracy floor %s (reward_model.min_heldout_accuracy) cannot be "
            "checked; raise reward_model.heldout_fraction or add preference pairs",
            floor,
        )
        return
    if accuracy >= floor:
        return
    if confidence is not None:
        low, high = accuracy_interval(accuracy, n, confidence)
        if high >= floor:
            log.warning(
                "reward model: held-out pairwise accuracy %.4f on %d held-out pairs is below the floor %s but not "
                "significantly (its %.0f%% interval [%.2f, %.2f] reaches it; reward_model.heldout_confidence): the "
                "round goes on; more held-out pairs would tell",
                accuracy, n, floor, 100 * confidence, low, high,
            )  # fmt: skip
            return
        raise RewardModelTooWeak(
            f"reward model too weak: held-out pairwise accuracy {accuracy:.4f} on {n} held-out pairs, whose "
            f"{100 * confidence:.0f}% interval [{low:.3f}, {high:.3f}] is below the floor {floor} (config keys "
            "reward_model.min_heldout_accuracy and heldout_confidence), so the round stops here. Add or improve "
            "preference pairs, train the RM longer (reward_model.epochs, reward_model.learning_rate), or lower "
            "reward_model.min_heldout_accuracy (null disables the check)."
        )
    few = (
        f" Only {n} held-out pair{'s' if n != 1 else ''}: the estimate is noisy (below {FEW_HELDOUT_PAIRS} pairs one "
        "pair moves it by 10 points or more), but the floor still applies."
        if n < FEW_HELDOUT_PAIRS
        else ""
    )
    raise RewardModelTooWeak(
        f"reward model too weak: held-out pairwise accuracy {accuracy:.4f} on {n} held-out pairs is below the floor "
        f"{floor} (config key reward_model.min_heldout_accuracy), so the round stops here.{few} Add or improve "
        "preference pairs, train the RM longer (reward_model.epochs, reward_model.learning_rate), or lower "
        "reward_model.min_heldout_accuracy (null disables the check)."
    )


def _length_sorted(trainer_cls):
    """``trainer_cls`` drawing batches of pairs of similar length (:class:`LengthSortedSampler`): the collator pads
    chosen and rejected to the batch's longest sequence."""

    class LengthSortedRewardTrainer(trainer_cls):
        def _get_train_sampler(self, train_dataset=None):
            ds = self.train_dataset if train_dataset is None else train_dataset
            lengths = [max(len(c), len(r)) for c, r in zip(ds["chosen_ids"], ds["rejected_ids"], strict=True)]
            return LengthSortedSampler(lengths, self.args.train_batch_size * self.args.world_size, self.args.seed)

    return LengthSortedRewardTrainer


def backbone_config(base: str, num_layers: int | None):
    """The RM's config: the backbone's with a 1-logit head, cut to its first ``num_layers`` layers when asked. Per-layer
    lists are cut with it (Gemma 3's ``layer_types``: sliding or full attention per layer), else the config refuses
    the shorter depth."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base, num_labels=1)
    depth = config.num_hidden_layers
    if num_layers and num_layers < depth:
        for key, value in list(vars(config).items()):
            if isinstance(value, list) and len(value) == depth:
                setattr(config, key, value[:num_layers])
        config.num_hidden_layers = num_layers
    return config


def train_reward_model(
    pairs: list[dict],
    base: str,
    cfg: RewardModelConfig,
    out: Path,
    *,
    seed: int,
    device: str,
    work_dir: Path,
    report_to: Sequence[str] = (),
    log_dir: Path | None = None,
    split_out: Path | None = None,
) -> dict:
    """Train a 1-logit sequence-classification RM on ``pairs`` (Bradley-Terry loss) and save it to ``out``.

    With ``cfg.use_margin`` the loss has a margin term per pair (:func:`pair_margin`); without it, no margin column
    reaches the trainer. Returns metrics: pair counts, held-out pairwise accuracy (None without held-out pairs),
    training loss, throughput and ``use_margin``. With ``split_out``, one JSON line per pair used (pair id, source,
    ``side``: train or heldout, the prompt; held-out pairs add both scores and whether the RM ranked them right). Metrics go to ``report_to`` (TensorBoard: ``log_dir``). The caller applies the accuracy floor with
    :func:`check_heldout_accuracy`.
    """
    import torch
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    prepare_training(seed)
    tokenizer = load_chat_tokenizer(base)
    pairs, too_long = fit_max_length(pairs, tokenizer, cfg.max_length)
    train, heldout = split_heldout(pairs, cfg.heldout_fraction)
    if not train:
        raise ValueError(
            f"the reward model has no training pairs ({len(pairs)} pairs within reward_model.max_length "
            f"{cfg.max_length}, {too_long} longer; with no seed pairs and no verifier pairs there are none at all)"
        )

    model = AutoModelForSequenceClassification.from_pretrained(
        base, config=backbone_config(base, cfg.num_layers), dtype=torch.float32
    )
    own_pad = give_distinct_pad(tokenizer, model)

    dataset = training_dataset(_to_trainer_rows(train, cfg.use_margin), work_dir)
    args = RewardConfig(
        **training_args(cfg, work_dir=work_dir, seed=seed, device=device, logging_steps=5, report_to=report_to),
        disable_tqdm=False,
    )
    trainer = _length_sorted(RewardTrainer)(
        model=model,
        args=args,
        processing_class=tokenizer,
        train_dataset=dataset,
        peft_config=peft_lora(cfg.lora, "SEQ_CLS"),
        callbacks=tensorboard_callbacks(report_to, log_dir),
    )
    t0 = time.time()
    with large_allocations_on_heap():
        result = trainer.train()
    train_s = time.time() - t0
    ntok = sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in trainer.train_dataset)
    save_merged(trainer.model, tokenizer, out)
    del trainer, model

    metrics = {
        "train_pairs": len(train),
        "train_pairs_by_source": dict(sorted(Counter(source_kind(p.get("source")) for p in train).items())),
        "heldout_pairs": len(heldout),
        "dropped_too_long": too_long,
        "steps": result.global_step,
        "train_loss": round(result.training_loss, 4),
        "train_s": round(train_s, 1),
        "train_tokens_per_s": round(ntok * cfg.epochs / max(train_s, 1e-9), 1),
        "bf16": args.bf16,
        "dtype": args_dtype(args),
        "backbone_layers": cfg.num_layers,
        "use_margin": cfg.use_margin,
        "own_pad_token": own_pad,
        "heldout_accuracy": None,
    }
    if not is_main_process():  # rank 0 saved the RM and scores the held-out pairs
        return metrics
    accuracy, scores = heldout_accuracy(heldout, str(out), cfg, device)
    metrics |= accuracy
    if split_out is not None:
        write_split(train, heldout, scores, split_out)
    return metrics


RM_PAD_TOKEN = "<|rm_pad|>"


def give_distinct_pad(tokenizer, model) -> bool:
    """Make the RM's pad token one that never occurs in a rendered conversation; True when one had to be added.

    A sequence-classification model reads its score at the rightmost token that is not the pad token. A tokenizer
    whose pad is its eos (``load_chat_tokenizer`` sets pad = eos when there is none, as for Llama-3-Instruct's
    ``<|eot_id|>``) whose template also ends in eos made TRL's RewardTrainer pool at the token before the final eos,
    while the scorer read at the eos itself: the head was scored where it was never trained. A new ``<|rm_pad|>``
    token (one embedding row, never attended) fixes training and scoring to the same position; it is saved with the
    RM's tokenizer."""
    probe = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]
    ids = tokenizer.apply_chat_template(probe, tokenize=True, return_dict=True)["input_ids"]
    added = tokenizer.pad_token_id is None or tokenizer.pad_token_id in ids
    if added:
        tokenizer.add_special_tokens({"pad_token": RM_PAD_TOKEN})
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    return added


def heldout_accuracy(heldout: list[dict], rm_path: str, cfg: RewardModelConfig, device: str) -> tuple[dict, list[dict]]:
    """Pairwise accuracy of the RM at ``rm_path`` on ``heldout``: per source, and over the real (non-synthetic)
    pairs, to which ``min_heldout_accuracy`` applies (synthetic negatives are easy by design); and each pair's
    scores, for :func:`write_split`."""
    if not heldout:
        return {}, []
    scorer = RewardScorer(
        rm_path, device=device, batch_size=cfg.score_batch_size, max_length=cfg.max_length, precision=cfg.precision
    )
    chosen = scorer.score([_conversation(p["messages"], p["chosen"]) for p in heldout])
    rejected = scorer.score([_conversation(p["messages"], p["rejected"]) for p in heldout])
    right = [c > r for c, r in zip(chosen, rejected, strict=True)]
    by_source: dict[str, list[bool]] = {}
    for p, ok in zip(heldout, right, strict=True):
        by_source.setdefault(source_kind(p.get("source")), []).append(ok)
    real = [ok for p, ok in zip(heldout, right, strict=True) if source_kind(p.get("source")) != "synthetic"]
    metrics = {
        "heldout_by_source": {
            src: {"accuracy": round(sum(v) / len(v), 4), "pairs": len(v)} for src, v in sorted(by_source.items())
        },
        "heldout_pairs": len(real),
        "heldout_accuracy": round(sum(real) / len(real), 4) if real else None,
    }
    scores = [
        {"chosen_score": round(c, 4), "rejected_score": round(r, 4), "right": ok}
        for c, r, ok in zip(chosen, rejected, right, strict=True)
    ]
    return metrics, scores


def write_split(train: list[dict], heldout: list[dict], scores: list[dict], path: Path) -> None:
    """``rm_split.jsonl``: one line per pair used (pair id, source, capability, ``side`` train or heldout, the
    prompt); held-out lines add both RM scores and whether the RM ranked the pair right."""

    def line(p: dict, side: str, extra: dict) -> dict:
        return {
            "pair_id": p["pair_id"],
            "source": source_kind(p.get("source")),
            "capability": p.get("capability"),
            "side": side,
            "prompt": _prompt_key(p),
            **extra,
        }

    rows = [line(p, "train", {}) for p in train]
    rows += [line(p, "heldout", extra) for p, extra in zip(heldout, scores, strict=True)]
    write_jsonl(rows, path)


def fit_max_length(pairs: list[dict], tokenizer, max_length: int) -> tuple[list[dict], int]:
    """The pairs whose chosen and rejected conversations both fit in ``max_length`` tokens (with the chat template),
    and how many were left out: TRL's RewardTrainer drops longer ones silently, so they are counted here first."""
    kept = []
    for p in pairs:
        lengths = [
            len(tokenizer.apply_chat_template(_conversation(p["messages"], p[side]), tokenize=True, return_dict=False))
            for side in ("chosen", "rejected")
        ]
        if max(lengths) <= max_length:
            kept.append(p)
    if len(kept) < len(pairs):
        log.warning("reward model: %d pairs longer than %d tokens left out", len(pairs) - len(kept), max_length)
    return kept, len(pairs) - len(kept)


class RewardScorer:
    """Scores conversations with a sequence-classification RM, reading the reward at the last real token.

    Conversations are rendered with the RM's own chat template. Batches are right-padded with the RM's pad token,
    which the model uses to find the last non-pad position; if the pad id also occurs as a real token (an RM whose
    pad is its eos, say), sequences are scored one at a time so padding can never shift the read position.
    """

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        batch_size: int = 16,
        max_length: int = 1024,
        precision: str = "auto",
    ):
        import torch
        from transformers import AutoModelForSequenceClassification

        self.tokenizer = load_chat_tokenizer(model)
        self.tokenizer.padding_side = "right"
        self.device = "cuda" if use_cuda(device) else "cpu"
        # The same policy as training: bf16 autocast where the device has bf16 natively (fp32 weights either way).
        self.dtype = training_dtype(precision, device, key="reward_model.precision")
        self.model = AutoModelForSequenceClassification.from_pretrained(model, dtype=torch.float32).to(self.device)
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.eval()
        self.batch_size = batch_size
        self.max_length = max_length

    def _encode(self, conversation: list[dict]) -> list[int]:
        text = self.tokenizer.apply_chat_template(conversation, tokenize=False)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids[-self.max_length :]  # keep the end: the reward is read at the last token

    def score(self, conversations: list[list[dict]]) -> list[float]:
        import torch

        encoded = [self._encode(c) for c in conversations]
        pad = self.tokenizer.pad_token_id
        scores: list[float | None] = [None] * len(encoded)
        # Sort by length so batches waste little padding; results are put back by index.
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        autocast = torch.autocast(self.device, dtype=torch_dtype(self.dtype), enabled=self.dtype != "fp32")
        with torch.inference_mode(), autocast:
            i = 0
            while i < len(order):
                idx = order[i : i + self.batch_size]
                batch = [encoded[j] for j in idx]
                if any(pad in ids for ids in batch):
                    idx, batch = idx[:1], batch[:1]
                width = max(len(ids) for ids in batch)
                input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
                attention = torch.zeros((len(batch), width), dtype=torch.long)
                for row, ids in enumerate(batch):
                    input_ids[row, : len(ids)] = torch.tensor(ids)
                    attention[row, : len(ids)] = 1
                # Batch of one: no padding, so read the very last position even if it equals the pad id.
                self.model.config.pad_token_id = None if len(batch) == 1 else pad
                logits = self.model(
                    input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device)
                ).logits
                for j, value in zip(idx, logits[:, 0].float().cpu().tolist(), strict=True):
                    scores[j] = value
                i += len(idx)
        return [float(s) for s in scores]  # type: ignore[arg-type]
