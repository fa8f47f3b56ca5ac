"""Rule-based quality filters for generated candidates, in the spirit of Llama 3's SFT data cleaning.

``apply_filters`` returns every candidate with ``drop_reason`` (None when kept, otherwise one stable category),
``drop_detail`` (free text: the ratio, the matched id, ...; None when kept) and ``flags`` (style flags, possibly
empty). The filters run in this order and the first that matches decides the reason:

1. ``"empty"``: the response is blank.
2. ``"truncated"``: generation stopped at ``max_new_tokens`` (``finish_reason == "length"``).
3. ``"repetition"``: more than ``cfg.max_repetition`` of the response's word ``cfg.repetition_ngram``-grams repeat an
   earlier n-gram of the same response (degenerate loops).
4. ``"incoherent"``: the mean log-probability per token of the response under the model that generated it
   (``mean_logprob``, untempered) is below ``cfg.min_mean_logprob``: text made of tokens the model itself finds
   unlikely ("obligate coprolinfusi·ome") is dropped before any ranking. Skipped for rows without the value; a NaN
   value (an overflow) is dropped even with the floor off.
5. ``"decontaminated"``: the response overlaps an evaluation item (``synth_data.decontaminate.Decontaminator``).
6. ``"exact duplicate"`` / ``"near-duplicate"`` (when ``cfg.dedup``): the *reply* equals, after normalisation, or
   near-duplicates (MinHash LSH estimate of the Jaccard similarity of word shingles at or above
   ``cfg.dedup_threshold``) a reply to the same prompt kept earlier in this round or, when
   ``cfg.dedup_earlier_rounds``, an earlier round's SFT reply to the same prompt. Replies are compared without the
   prompt: with short replies a shared prompt dominated the similarity ("The answer is 16." and "The answer is 15."
   scored 0.93 together with their prompt), and replies to different prompts are never duplicates of each other.
   Candidates are visited best first by ``rank`` (the stage passes the verifier's: passes, then replies without a
   verifier, then failures), then by candidate number, so a verified-correct reply is never dropped as the
   duplicate of a failed one, and the survivor does not depend on input order; only candidates that survived
   filters 1-5 and dedup itself enter the index.
7. ``"style cap"``: candidates with style flags (more than ``cfg.max_emojis`` emojis, more than
   ``cfg.max_exclamations`` exclamation marks, an over-apologetic / refusal-boilerplate phrase) may make up at most
   ``cfg.max_flagged_share`` of the kept data. With U unflagged and F flagged candidates kept after filters 1-6 and
   share s, at most ``floor(s * U / (1 - s))`` flagged ones are kept (all of them when s >= 1, none when s <= 0), the
   largest number for which flagged / kept <= s. Which ones stay is a seeded order: ascending
   ``sha256(f"{seed}:{candidate_id}")``, so the choice does not depend on the input order.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING

from datasketch import MinHash, MinHashLSH

from alignment.records import candidate_order
from synth_data.decontaminate import ngrams, tokens

if TYPE_CHECKING:
    from alignment.config import FiltersConfig
    from synth_data.decontaminate import Decontaminator

EMOJI_RE = re.compile(
    "["
    "\U0001f1e6-\U0001f1ff"  # regional indicators (flags)
    "\U0001f300-\U0001f5ff"  # symbols & pictographs
    "\U0001f600-\U0001f64f"  # emoticons
    "\U0001f680-\U0001f6ff"  # transport & map
    "\U0001f700-\U0001f7ff"  # alchemical, geometric shapes extended
    "\U0001f800-\U0001f8ff"  # supplemental arrows-C
    "\U0001f900-\U0001f9ff"  # supplemental symbols & pictographs
    "\U0001fa00-\U0001faff"  # chess, symbols & pictographs extended-A
    "\u2600-\u27bf"  # miscellaneous symbols, dingbats
    "\u2b50\u2b55\u2b1b\u2b1c"  # star, circle, squares
    "]"
)
"""One match per emoji / pictograph code point (skin-tone modifiers and variation selectors are not counted)."""

APOLOGY_PATTERNS: tuple[str, ...] = (
    r"\bI['\u2019]?m (?:so |very |really |truly )?sorry\b",
    r"\bI am (?:so |very |really |truly )?sorry\b",
    r"\bI apologi[sz]e\b",
    r"\bmy apologies\b",
    r"\bsorry for (?:the|any) (?:confusion|inconvenience|misunderstanding)\b",
    r"\bas an AI\b",
    r"\bas a (?:large )?language model\b",
    r"\bI(?: cannot|can['\u2019]?t| am not able to| am unable to) (?:help|assist) with that\b",
)
"""Over-apologetic tone and refusal boilerplate (Llama 3 filters "I'm sorry", "I apologize" and the like)."""

_APOLOGY_RE = re.compile("|".join(f"(?:{p})" for p in APOLOGY_PATTERNS), re.IGNORECASE)

REASONS = (
    "empty",
    "truncated",
    "repetition",
    "incoherent",
    "decontaminated",
    "exact duplicate",
    "near-duplicate",
    "style cap",
)
"""Every ``drop_reason`` category, in the order the filters run."""


def repetition_ratio(text: str, n: int) -> float:
    """Share of the text's word n-grams that repeat an earlier n-gram of the same text (0.0 below n + 1 words)."""
    grams = ngrams(tokens(text), n)
    if len(grams) < 2:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    repeats = 0
    for gram in grams:
        if gram in seen:
            repeats += 1
        else:
            seen.add(gram)
    return repeats / len(grams)


def style_flags(text: str, cfg: FiltersConfig) -> list[str]:
    """Style flags of a response: ``emojis>N``, ``exclamations>N``, ``apologetic`` (in this order)."""
    flags = []
    if len(EMOJI_RE.findall(text)) > cfg.max_emojis:
        flags.append(f"emojis>{cfg.max_emojis}")
    if text.count("!") > cfg.max_exclamations:
        flags.append(f"exclamations>{cfg.max_exclamations}")
    if _APOLOGY_RE.search(text):
        flags.append("apologetic")
    return flags


def _normalised(text: str) -> str:
    return " ".join(tokens(text))


class NearDuplicateIndex:
    """Exact (normalised-text hash) and near-duplicate (MinHash LSH over word shingles) lookup of indexed texts.

    Shingles are the word ``shingle``-grams of the normalised text; a shorter text is one shingle (its whole token
    tuple; the empty text one empty shingle). MinHash uses datasketch's fixed seed 1, so results are reproducible.
    """

    def __init__(self, threshold: float, num_perm: int = 128, shingle: int = 3) -> None:
        self.threshold = threshold
        self.num_perm = num_perm
        self.shingle = shingle
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._minhashes: dict[str, MinHash] = {}
        self._exact: dict[str, str] = {}

    @classmethod
    def from_config(cls, cfg: FiltersConfig) -> NearDuplicateIndex:
        return cls(cfg.dedup_threshold, cfg.dedup_num_perm, cfg.dedup_shingle)

    def __len__(self) -> int:
        return len(self._minhashes)

    def __contains__(self, key: str) -> bool:
        return key in self._minhashes

    def minhash(self, text: str) -> MinHash:
        words = tokens(text)
        shingles = ngrams(words, self.shingle) if len(words) >= self.shingle else [tuple(words)]
        m = MinHash(num_perm=self.num_perm, seed=1)
        m.update_batch([" ".join(s).encode("utf-8") for s in shingles])
        return m

    @staticmethod
    def _digest(text: str) -> str:
        return hashlib.sha256(_normalised(text).encode("utf-8")).hexdigest()

    def add(self, key: str, text: str) -> None:
        """Index ``text`` under ``key`` (keys are unique; the first key of an exact text is the one reported)."""
        if key in self._minhashes:
            raise ValueError(f"key {key!r} is already indexed")
        m = self.minhash(text)
        self._lsh.insert(key, m, check_duplication=False)
        self._minhashes[key] = m
        self._exact.setdefault(self._digest(text), key)

    def seen_exact(self, text: str) -> str | None:
        """Key of an indexed text equal to ``text`` after normalisation (lowercase word tokens), or None."""
        return self._exact.get(self._digest(text))

    def query(self, text: str) -> list[str]:
        """Keys of indexed near-duplicates of ``text``: LSH candidates whose estimated Jaccard similarity reaches the
        threshold, most similar first (ties by key)."""
        m = self.minhash(text)
        scored = [(m.jaccard(self._minhashes[k]), k) for k in self._lsh.query(m)]
        return [k for sim, k in sorted(scored, key=lambda sk: (-sk[0], sk[1])) if sim >= self.threshold]


def _seeded_rank(seed: int, candidate_id: str) -> str:
    return hashlib.sha256(f"{seed}:{candidate_id}".encode()).hexdigest()


def max_flagged_kept(unflagged: int, share: float) -> int:
    """Most flagged candidates that may be kept beside ``unflagged`` ones: ``floor(share * unflagged / (1 - share))``
    (exact arithmetic on the decimal value of ``share``), unbounded (-1) when share >= 1, 0 when share <= 0."""
    if share >= 1:
        return -1
    if share <= 0:
        return 0
    s = Fraction(str(share))
    return math.floor(s * unflagged / (1 - s))


def _incoherent(row: dict, floor: float | None) -> bool:
    value = row.get("mean_logprob")
    # NaN (a numeric overflow while scoring the tokens) is no fluency signal: dropped, not kept as fluent, even with
    # the floor off (the likelihood ranking could not place it)
    return value is not None and (math.isnan(value) or (floor is not None and value < floor))


def _sft_reply(row: dict) -> str:
    messages = list(row["messages"])
    return messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" else ""


def apply_filters(
    candidates: Sequence[dict],
    prompts_by_id: dict[str, dict],
    cfg: FiltersConfig,
    *,
    decontaminator: Decontaminator | None,
    earlier_sft: Iterable[dict] = (),
    seed: int = 0,
    rank: Callable[[dict], int] | None = None,
) -> tuple[list[dict], dict]:
    """Every candidate (input order) with ``drop_reason``, ``drop_detail`` and ``flags`` added, and stats.

    See the module docstring for the filters and their order. Stats: ``candidates``, ``kept``, ``dropped``
    {reason: n}, ``dropped_by_capability`` {capability: {reason: n}}, ``kept_by_capability`` {capability: n} and
    ``flagged_kept`` {flag: n}, with sorted keys.
    """
    rows = [{**c, "drop_reason": None, "drop_detail": None, "flags": style_flags(c["text"], cfg)} for c in candidates]

    def drop(row: dict, reason: str, detail: str | None) -> None:
        row["drop_reason"], row["drop_detail"] = reason, detail

    for row in rows:
        text = row["text"]
        if not text.strip():
            drop(row, "empty", "blank response")
        elif row["finish_reason"] == "length":
            drop(row, "truncated", f"no end-of-turn within {row.get('num_tokens')} tokens")
        elif (ratio := repetition_ratio(text, cfg.repetition_ngram)) > cfg.max_repetition:
            drop(row, "repetition", f"{ratio:.2f} of {cfg.repetition_ngram}-grams repeat (max {cfg.max_repetition})")
        elif _incoherent(row, cfg.min_mean_logprob):
            value = row["mean_logprob"]
            why = "mean log-prob is NaN" if math.isnan(value) else f"mean log-prob {value:.2f} < {cfg.min_mean_logprob}"
            drop(row, "incoherent", why)
        elif decontaminator is not None and (why := decontaminator.is_contaminated(text)):
            drop(row, "decontaminated", why)

    if cfg.dedup:
        indexes: dict[str, NearDuplicateIndex] = defaultdict(lambda: NearDuplicateIndex.from_config(cfg))
        sft_ids: dict[str, str] = {}
        if cfg.dedup_earlier_rounds:
            for i, sft_row in enumerate(earlier_sft):
                key = f"sft:{i}"
                sft_ids[key] = str(sft_row.get("candidate_id") or sft_row.get("prompt_id") or i)
                indexes[sft_row["prompt_id"]].add(key, _sft_reply(sft_row))

        def describe(key: str) -> str:
            return f"of earlier-round SFT row {sft_ids[key]}" if key in sft_ids else f"of {key[len('cand:') :]}"

        def order(r: dict) -> tuple:
            return (rank(r) if rank else 0, candidate_order(r["candidate_id"]))

        for row in sorted(rows, key=order):
            if row["drop_reason"] is not None:
                continue
            index = indexes[row["prompt_id"]]
            if (key := index.seen_exact(row["text"])) is not None:
                drop(row, "exact duplicate", describe(key))
            elif near := index.query(row["text"]):
                drop(row, "near-duplicate", describe(near[0]))
            else:
                index.add(f"cand:{row['candidate_id']}", row["text"])

    kept = [r for r in rows if r["drop_reason"] is None]
    flagged = sorted((r for r in kept if r["flags"]), key=lambda r: _seeded_rank(seed, r["candidate_id"]))
    allowed = max_flagged_kept(len(kept) - len(flagged), cfg.max_flagged_share)
    if allowed >= 0:
        for row in flagged[allowed:]:
            drop(row, "style cap", f"{', '.join(row['flags'])}; flagged share capped at {cfg.max_flagged_share}")

    return rows, filter_stats(rows, prompts_by_id)


def filter_stats(rows: Iterable[dict], prompts_by_id: dict[str, dict]) -> dict:
    """Counts of filtered rows by reason, capability and style flag (JSON-serialisable, sorted keys)."""
    total = 0
    dropped: Counter[str] = Counter()
    dropped_by_cap: dict[str, Counter[str]] = defaultdict(Counter)
    kept_by_cap: Counter[str] = Counter()
    flagged_kept: Counter[str] = Counter()
    for row in rows:
        total += 1
        cap = prompts_by_id[row["prompt_id"]]["capability"]
        if row["drop_reason"] is None:
            kept_by_cap[cap] += 1
            flagged_kept.update(row["flags"])
        else:
            dropped[row["drop_reason"]] += 1
            dropped_by_cap[cap][row["drop_reason"]] += 1
    return {
        "candidates": total,
        "dropped": dict(sorted(dropped.items())),
        "dropped_by_capability": {cap: dict(sorted(c.items())) for cap, c in sorted(dropped_by_cap.items())},
        "flagged_kept": dict(sorted(flagged_kept.items())),
        "kept": sum(kept_by_cap.values()),
        "kept_by_capability": dict(sorted(kept_by_cap.items())),
    }
