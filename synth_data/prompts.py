"""The prompts stage: a pool of built-in and user prompts, and each round's draw from it, written to prompts.parquet.

A prompt record is ``{prompt_id, capability, messages, answer, constraints, source}`` where ``constraints`` is a
JSON string (a list of ``{"type", "value"}``; ``"[]"`` when none) so heterogeneous values fit one parquet column.

* :func:`load_prompt_source` reads a user source (public-format JSONL / parquet, or a :class:`PromptSource` with a
  column mapping: JSONL, parquet or a saved ``datasets`` folder) as suite items, with file:line / row errors.
* :func:`build_pool` is the same in every round: ``builtin_train_prompts(builtin, seed, wordings)`` plus every user source.
* :func:`solved_prompt_ids` reads earlier rounds' verdicts; :func:`draw_prompts` draws the round's prompts per
  capability by ``mix``, down-weighting solved prompts. :func:`build_prompt_set` chains them, after removing the
  prompts an ``exclude`` callback rejects (decontamination).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from alignment.config import PromptsConfig, PromptSource
from alignment.records import MESSAGES_TYPE, write_parquet
from synth_data.suite_format import SuiteFormatError, iter_jsonl, load_suite, validate_item, validate_messages
from synth_data.suites import builtin_train_prompts

log = logging.getLogger(__name__)

PROMPT_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("capability", pa.string()),
        ("messages", MESSAGES_TYPE),
        ("answer", pa.string()),
        ("constraints", pa.string()),
        ("topic", pa.string()),
        ("source", pa.string()),
    ]
)
SOURCE_FIELDS = ("id", "prompt", "messages", "capability", "answer", "constraints", "system", "topic")
"""Fields a PromptSource's ``columns`` may map (our field -> the source's column)."""


def to_prompt_record(item: dict, source: str) -> dict:
    """A suite item (public format) as a prompt record."""
    return {
        "prompt_id": item["id"],
        "capability": item["capability"],
        "messages": [{"role": m["role"], "content": m["content"]} for m in item["messages"]],
        "answer": item.get("answer"),
        "constraints": json.dumps(item.get("constraints") or []),
        "topic": item.get("topic"),
        "source": source,
    }


# ------------------------------------------------------------------------------------------ user sources


def source_name(src: PromptSource | str | Path) -> str:
    """The ``source`` of a user source's prompt records: its path."""
    return src.path if isinstance(src, PromptSource) else str(src)


def load_user_prompts(path: str | Path) -> list[dict]:
    """User prompts in the public suite format: JSONL, or parquet with the same columns (our own prompts.parquet,
    with ``prompt_id`` and JSON-string constraints, is accepted too). A folder is read as a saved ``datasets``
    folder with the public columns (see :func:`load_prompt_source`)."""
    path = Path(path)
    if path.is_dir():
        return load_prompt_source(PromptSource(path=str(path)))
    if not path.is_file():
        raise FileNotFoundError(f"prompt file not found: {path}")
    if path.suffix != ".parquet":
        return load_suite(path)
    rows = pq.read_table(path).to_pylist()
    if not rows:
        raise SuiteFormatError(path, 0, "no items")
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        # Accept the public columns (id, ...) and our own prompts.parquet (prompt_id, JSON-string constraints).
        if "id" not in row and "prompt_id" in row:
            row["id"] = row.pop("prompt_id")
        row.pop("source", None)
        if isinstance(row.get("constraints"), str):
            row["constraints"] = json.loads(row["constraints"]) or None
        row = {k: v for k, v in row.items() if v is not None}
        try:
            validate_item(row)
        except ValueError as e:
            raise SuiteFormatError(path, i + 1, f"row {i + 1}: {e}") from e
        if row["id"] in seen:
            raise SuiteFormatError(
                path, i + 1, f"row {i + 1}: duplicate id {row['id']!r} (first on row {seen[row['id']]})"
            )
        seen[row["id"]] = i + 1
        rows[i] = row
    return rows


def load_prompt_source(src: PromptSource | str | Path) -> list[dict]:
    """Suite items (``id``, ``capability``, ``messages``, optional ``answer`` / ``constraints``) of a user source.

    A path (str) is a file in the public suite format (:func:`load_user_prompts`). A :class:`PromptSource` reads
    JSONL, parquet or a ``save_to_disk`` folder through its column mapping: ``prompt`` (a user text, preceded by a
    ``system`` message when the source has one) or ``messages``; ``capability`` (else ``src.capability``); ``id``
    (else ``<stem>-<index:06d>``, ``<stem>-<split>-<index:06d>`` for a DatasetDict split); ``answer`` (numbers
    become strings); ``constraints`` (a list or its JSON string). A mapping naming a missing column fails before any
    row is read; a bad record raises SuiteFormatError with the file and its line (JSONL) or row (1-based).
    """
    if not isinstance(src, PromptSource):
        return load_user_prompts(src)
    path = Path(src.path)
    if not path.exists():
        raise FileNotFoundError(f"prompt source not found: {path}")
    unknown = sorted(set(src.columns) - set(SOURCE_FIELDS))
    if unknown:
        raise ValueError(
            f"{path}: columns names unknown field {unknown[0]!r} (fields: {', '.join(SOURCE_FIELDS)}; "
            "a mapping reads our field: the source's column)"
        )
    if path.is_dir():
        available, rows, unit = *_read_saved_dataset(path, src.split), "row"
    else:
        if src.split is not None:
            raise ValueError(f"{path}: split {src.split!r} applies only to a folder saved by DatasetDict.save_to_disk")
        if path.suffix == ".parquet":
            available, unit = list(pq.read_schema(path).names), "row"
            rows = None  # read after the mapping is checked
        else:
            available, rows, unit = *_read_jsonl_rows(path), "line"
    cols = _resolve_columns(path, src, available)
    if rows is None:
        rows = list(enumerate(pq.read_table(path).to_pylist(), start=1))
    if not rows:
        raise SuiteFormatError(path, 0, "no items (the source is empty)")
    _check_required_columns(path, src, cols, available, rows[0][0], unit)
    stem = path.stem if src.split is None else f"{path.stem}-{src.split}"
    items: list[dict] = []
    seen: dict[str, int] = {}
    for index, (loc, row) in enumerate(rows):
        where = "" if unit == "line" else f"row {loc}: "
        try:
            item = _mapped_item(row, cols, src, default_id=f"{stem}-{index:06d}")
        except ValueError as e:
            raise SuiteFormatError(path, loc, f"{where}{e}") from e
        if item["id"] in seen:
            raise SuiteFormatError(
                path, loc, f"{where}duplicate id {item['id']!r} (first on {unit} {seen[item['id']]})"
            )
        seen[item["id"]] = loc
        items.append(item)
    return items


def _read_jsonl_rows(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """(column names in order of first appearance, [(line number, object)]) of a JSONL file, blank lines skipped."""
    rows: list[tuple[int, dict]] = []
    columns: dict[str, None] = {}
    for lineno, obj in iter_jsonl(path):
        if not isinstance(obj, dict):
            raise SuiteFormatError(path, lineno, f"record is not a JSON object but {type(obj).__name__}")
        columns.update(dict.fromkeys(obj))
        rows.append((lineno, obj))
    return list(columns), rows


def _read_saved_dataset(path: Path, split: str | None) -> tuple[list[str], list[tuple[int, dict]]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as e:
        raise ValueError(
            f"{path}: not a folder written by Dataset.save_to_disk or DatasetDict.save_to_disk ({e})"
        ) from e
    if isinstance(ds, datasets.DatasetDict):
        splits = ", ".join(ds)
        if split is None:
            raise ValueError(f"{path}: a saved DatasetDict needs a split (prompt source 'split'); splits: {splits}")
        if split not in ds:
            raise ValueError(f"{path}: no split {split!r} in the saved DatasetDict; splits: {splits}")
        ds = ds[split]
    elif split is not None and str(ds.split) != split:
        raise ValueError(
            f"{path}: holds a single Dataset (split {ds.split}), not a DatasetDict; remove split {split!r}"
        )
    return list(ds.column_names), list(enumerate(ds.to_list(), start=1))


def _resolve_columns(path: Path, src: PromptSource, available: list[str]) -> dict[str, str | None]:
    """Our field -> the source column it is read from (None: the source has none)."""
    for fld, col in src.columns.items():
        if col not in available:
            raise ValueError(
                f"{path}: columns.{fld} names column {col!r}, which the source does not have "
                f"(columns: {', '.join(available) or 'none'})"
            )
    cols = {f: src.columns.get(f, f if f in available else None) for f in SOURCE_FIELDS}
    # A mapped prompt text and an unmapped same-named messages column (or the reverse): the mapping decides.
    if "prompt" in src.columns and "messages" not in src.columns:
        cols["messages"] = None
    if "messages" in src.columns and "prompt" not in src.columns:
        cols["prompt"] = None
    return cols


def _check_required_columns(
    path: Path, src: PromptSource, cols: dict[str, str | None], available: list[str], first: int, unit: str
) -> None:
    where = "" if unit == "line" else f"row {first}: "
    listed = ", ".join(available) or "none"
    if cols["messages"] is None and cols["prompt"] is None:
        raise SuiteFormatError(
            path,
            first,
            f"{where}missing prompt: the source has no 'prompt' or 'messages' column (columns: {listed}); "
            "map one with columns.prompt or columns.messages",
        )
    if cols["capability"] is None and src.capability is None:
        raise SuiteFormatError(
            path,
            first,
            f"{where}missing capability: the source has no 'capability' column (columns: {listed}); "
            "set the prompt source's capability or map columns.capability",
        )


def _field(name: str, cols: Mapping[str, str | None]) -> str:
    col = cols[name]
    return f"'{name}'" if col in (None, name) else f"'{name}' (column {col!r})"


def _mapped_item(row: dict, cols: dict[str, str | None], src: PromptSource, default_id: str) -> dict:
    """One source row as a suite item; ValueError names the field and its mapped column."""

    def get(name: str) -> Any:
        return row.get(cols[name]) if cols[name] is not None else None

    messages, prompt = get("messages"), get("prompt")
    if messages is not None:
        try:
            validate_messages(messages)
        except ValueError as e:
            raise ValueError(f"{_field('messages', cols)}: {e}") from e
        messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    elif prompt is not None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"{_field('prompt', cols)} must be a non-empty str, got {prompt!r}")
        messages = [{"role": "user", "content": prompt}]
    else:
        names = " or ".join(_field(f, cols) for f in ("messages", "prompt") if cols[f] is not None)
        raise ValueError(f"missing prompt: {names} is null or absent")
    system = get("system")
    if system is not None:
        if not isinstance(system, str):
            raise ValueError(f"{_field('system', cols)} must be a str, got {type(system).__name__}")
        if system.strip() and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system}, *messages]

    capability = get("capability")
    if capability is None:
        capability = src.capability
    if capability is None:
        raise ValueError(f"missing capability: {_field('capability', cols)} is null and the source sets no capability")
    if not isinstance(capability, str) or not capability:
        raise ValueError(f"{_field('capability', cols)} must be a non-empty str, got {capability!r}")

    if cols["id"] is None:
        item_id = default_id
    else:
        item_id = get("id")
        if isinstance(item_id, int) and not isinstance(item_id, bool):
            item_id = str(item_id)
        if not isinstance(item_id, str) or not item_id:
            raise ValueError(f"{_field('id', cols)} must be a non-empty str or an integer, got {item_id!r}")

    item: dict[str, Any] = {"id": item_id, "capability": capability, "messages": messages}
    answer = get("answer")
    if isinstance(answer, bool):
        raise ValueError(f"{_field('answer', cols)} must be a str or a number, got {answer!r}")
    if isinstance(answer, (int, float)):
        if not math.isfinite(answer):
            raise ValueError(f"{_field('answer', cols)} must be a finite number, got {answer!r}")
        answer = str(int(answer)) if float(answer).is_integer() else str(answer)
    if answer is not None:
        if not isinstance(answer, str):
            raise ValueError(f"{_field('answer', cols)} must be a str or a number, got {type(answer).__name__}")
        if answer.strip():
            item["answer"] = answer
    constraints = get("constraints")
    if isinstance(constraints, str):
        try:
            constraints = json.loads(constraints) if constraints.strip() else None
        except json.JSONDecodeError as e:
            raise ValueError(f"{_field('constraints', cols)} is a str but not valid JSON ({e.msg})") from e
    if constraints is not None:
        if not isinstance(constraints, list):
            raise ValueError(f"{_field('constraints', cols)} must be a list, got {type(constraints).__name__}")
        if constraints:
            item["constraints"] = constraints
    try:
        validate_item(item)
    except ValueError as e:
        mapped = ", ".join(f"{f}: {c}" for f, c in src.columns.items())
        raise ValueError(f"{e}" + (f" (column mapping: {mapped})" if mapped else "")) from e
    return item


# ------------------------------------------------------------------------------------------------- pool


def build_pool(cfg: PromptsConfig) -> list[dict]:
    """Every prompt a round may draw: ``builtin_train_prompts(cfg.builtin, cfg.seed, cfg.wordings)`` (the same in every round)
    plus every user source, as prompt records. A prompt_id seen twice raises ValueError naming both sources."""
    builtin = builtin_train_prompts(cfg.builtin, seed=cfg.seed, wordings=cfg.wordings)
    records = [to_prompt_record(item, "builtin") for item in builtin]
    for src in cfg.files:
        name = source_name(src)
        records.extend(to_prompt_record(item, name) for item in load_prompt_source(src))
    first_source: dict[str, str] = {}
    for rec in records:
        pid = rec["prompt_id"]
        if pid in first_source:
            raise ValueError(f"duplicate prompt_id {pid!r}: in {first_source[pid]} and in {rec['source']}")
        first_source[pid] = rec["source"]
    return records


def solved_prompt_ids(earlier_rounds: Iterable[Path], pass_rate: float) -> set[str]:
    """Ids of prompts solved in every earlier round that drew them.

    A round drew a prompt when its ``prompts.parquet`` lists it, and solved it when at least ``pass_rate`` of its
    verified candidates (``verified`` not null in ``verdicts.parquet``) passed; a drawn prompt without verified
    candidates there (no verifier, or every candidate filtered) is not solved in that round. A round folder that
    does not exist is skipped; one without those files raises FileNotFoundError.
    """
    if not 0.0 <= pass_rate <= 1.0:
        raise ValueError(f"prompts.solved_pass_rate must be between 0 and 1, got {pass_rate}")
    drawn_ever: set[str] = set()
    unsolved: set[str] = set()
    for folder in earlier_rounds:
        folder = Path(folder)
        if not folder.exists():
            continue
        missing = [name for name in ("prompts.parquet", "verdicts.parquet") if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{folder}: an earlier round without {' and '.join(missing)} (unfinished?); finish or remove it "
                "before drawing this round's prompts"
            )
        drawn = set(pq.read_table(folder / "prompts.parquet", columns=["prompt_id"]).column("prompt_id").to_pylist())
        verdicts = pq.read_table(folder / "verdicts.parquet")
        tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # prompt_id -> [passed, verified]
        if verdicts.num_rows:
            for row in verdicts.select(["prompt_id", "verified"]).to_pylist():
                if row["verified"] is not None:
                    tally[row["prompt_id"]][0] += row["verified"] is True
                    tally[row["prompt_id"]][1] += 1
        for pid in drawn:
            passed, verified = tally.get(pid, (0, 0))
            if not (verified and passed / verified >= pass_rate):
                unsolved.add(pid)
        drawn_ever |= drawn
    return drawn_ever - unsolved


# ------------------------------------------------------------------------------------------------- draw


def mix_counts(cfg: PromptsConfig) -> dict[str, int]:
    """Prompts to draw per capability of ``cfg.mix``: its values as counts, or with ``num_prompts`` as weights
    turned into counts by largest remainder (ties: order in the mix) so that they sum to ``num_prompts``."""
    for cap, v in cfg.mix.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"prompts.mix.{cap} must be a non-negative number, got {v!r}")
    if cfg.num_prompts is None:
        for cap, v in cfg.mix.items():
            if not float(v).is_integer():
                raise ValueError(
                    f"prompts.mix.{cap} must be a whole number of prompts, got {v!r} (values are counts unless "
                    "prompts.num_prompts is set, which makes them weights)"
                )
        return {cap: int(v) for cap, v in cfg.mix.items()}
    if isinstance(cfg.num_prompts, bool) or not isinstance(cfg.num_prompts, int) or cfg.num_prompts < 1:
        raise ValueError(f"prompts.num_prompts must be a positive integer, got {cfg.num_prompts!r}")
    if not cfg.mix:
        raise ValueError("prompts.num_prompts is set but prompts.mix is empty: give a weight per capability")
    weights = {cap: Fraction(v) for cap, v in cfg.mix.items()}
    total = sum(weights.values())
    if total == 0:
        raise ValueError(f"prompts.mix weights sum to 0 ({dict(cfg.mix)}); give some capability a positive weight")
    quotas = {cap: cfg.num_prompts * w / total for cap, w in weights.items()}
    counts = {cap: math.floor(q) for cap, q in quotas.items()}
    order = list(cfg.mix)
    by_remainder = sorted(order, key=lambda c: (-(quotas[c] - counts[c]), order.index(c)))
    for cap in by_remainder[: cfg.num_prompts - sum(counts.values())]:
        counts[cap] += 1
    return counts


def _draw_key(seed: int, prompt_id: str, weight: float) -> tuple[int, float]:
    """Efraimidis–Spirakis key (larger draws first): log(u) / w, with u uniform in (0, 1) from a hash of the seed
    and the prompt id, so a prompt's key does not depend on the rest of the pool. Weight 0 sorts after every
    positive weight, in seeded order."""
    h = int.from_bytes(hashlib.sha256(f"{seed}:{prompt_id}".encode()).digest()[:8], "big")
    u = (h + 1) / (2**64 + 2)
    return (1, math.log(u) / weight) if weight > 0 else (0, u)


def draw_prompts(pool: list[dict], cfg: PromptsConfig, round_index: int, solved: set[str]) -> tuple[list[dict], dict]:
    """Round ``round_index``'s prompts from ``pool`` by ``cfg.mix`` (see :func:`mix_counts`), and draw stats.

    Within a capability prompts are drawn without replacement with weight 1, or ``cfg.solved_weight`` for ids in
    ``solved``, seeded by ``cfg.seed + round_index``. Asking for more than the pool holds takes all of them and
    reports the shortfall; a capability of the mix that the pool lacks raises ValueError; an empty mix takes the
    whole pool. Records come sorted by capability, then prompt_id. Stats: ``pool``, ``drawn``, ``solved_in_pool``,
    ``solved_drawn`` and (when any) ``shortfall``, each ``{capability: count}``.
    """
    w_solved = cfg.solved_weight
    if isinstance(w_solved, bool) or not isinstance(w_solved, (int, float)) or not 0 <= w_solved < math.inf:
        raise ValueError(f"prompts.solved_weight must be a non-negative number, got {w_solved!r}")
    by_cap: dict[str, list[dict]] = defaultdict(list)
    for rec in pool:
        by_cap[rec["capability"]].append(rec)
    counts = mix_counts(cfg)
    missing = [cap for cap in counts if cap not in by_cap]
    if missing:
        raise ValueError(
            f"prompts.mix.{missing[0]}: the prompt pool has no {missing[0]!r} prompts "
            f"(capabilities in the pool: {', '.join(sorted(by_cap)) or 'none'})"
        )
    seed = cfg.seed + round_index
    drawn: list[dict] = []
    shortfall: dict[str, int] = {}
    if not cfg.mix:
        drawn = list(pool)
    for cap, want in counts.items():
        recs = by_cap[cap]
        if want > len(recs):
            shortfall[cap] = want - len(recs)
            log.warning(
                "prompts.mix.%s asks for %d prompts but the pool has %d: drawing all of them", cap, want, len(recs)
            )
        keyed = sorted(
            recs,
            key=lambda r: _draw_key(seed, r["prompt_id"], w_solved if r["prompt_id"] in solved else 1.0),
            reverse=True,
        )
        drawn.extend(keyed[:want])
    drawn.sort(key=lambda r: (r["capability"], r["prompt_id"]))

    def per_cap(recs: Iterable[dict], caps: Iterable[str]) -> dict[str, int]:
        c = Counter(r["capability"] for r in recs)
        return {cap: c[cap] for cap in sorted(caps)}

    drawn_caps = counts if cfg.mix else by_cap
    stats: dict[str, dict[str, int]] = {
        "pool": per_cap(pool, by_cap),
        "drawn": per_cap(drawn, drawn_caps),
        "solved_in_pool": per_cap((r for r in pool if r["prompt_id"] in solved), by_cap),
        "solved_drawn": per_cap((r for r in drawn if r["prompt_id"] in solved), drawn_caps),
    }
    if shortfall:
        stats["shortfall"] = dict(sorted(shortfall.items()))
    return drawn, stats


def build_prompt_set(
    cfg: PromptsConfig,
    round_index: int,
    *,
    earlier_rounds: list[Path],
    exclude: Callable[[dict], str | None],
) -> tuple[list[dict], dict]:
    """Round ``round_index``'s prompt records and stats: the pool (:func:`build_pool`), minus records for which
    ``exclude(record)`` returns a reason (decontamination; ``stats["excluded"] = {reason: {capability: n}}``),
    drawn by :func:`draw_prompts` with the prompts solved in ``earlier_rounds`` down-weighted.

    Raises ValueError when the result is empty, naming what was configured.
    """
    kept: list[dict] = []
    excluded: dict[str, Counter] = defaultdict(Counter)
    for rec in build_pool(cfg):
        reason = exclude(rec)
        if reason:
            excluded[reason][rec["capability"]] += 1
        else:
            kept.append(rec)
    excluded_stats = {reason: dict(sorted(c.items())) for reason, c in sorted(excluded.items())}

    def empty_error() -> ValueError:
        files = [source_name(f) for f in cfg.files]
        removed = f", removed: {excluded_stats}" if excluded_stats else ""
        return ValueError(
            f"the prompt set is empty (prompts.builtin={dict(cfg.builtin)}, prompts.files={files}, "
            f"prompts.mix={dict(cfg.mix)}{removed}): configure at least one built-in capability count or a prompt "
            "file, and a mix that draws from them"
        )

    if not kept:
        raise empty_error()
    solved = solved_prompt_ids(earlier_rounds, cfg.solved_pass_rate)
    records, stats = draw_prompts(kept, cfg, round_index, solved)
    if not records:
        raise empty_error()
    stats["excluded"] = excluded_stats
    return records, stats


def write_prompts(records: list[dict], path: str | Path) -> None:
    write_parquet(records, path, schema=PROMPT_SCHEMA)
