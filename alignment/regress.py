"""Regression check of a model against a stored baseline eval: the CI job that fails when a checkpoint got worse.

    alignment regress --model PATH --baseline benchmarks/baselines/embedded.json [--tolerance 0.05]
    make regress MODEL=PATH BASELINE=FILE

The baseline is an ``alignment eval`` output (``X.json`` with ``X.items.jsonl`` and ``X.settings.json`` beside it).
The model is evaluated with the baseline's settings (suites, items, max new tokens, decoding, backend) and compared
item by item (:mod:`alignment.compare`). A capability fails when its accuracy dropped by more than its tolerance and
the drop is significant at ``--confidence`` (the paired interval lies below zero), so a 60-item suite's noise does
not fail the job. The exit code is 1 when a capability regressed, after a table of what dropped, by how much, and
which items flipped; 0 otherwise. Bad input (missing baseline, settings file) exits 2 with the file named.

The baseline's stored responses are verified again with today's verifiers before the comparison
(:func:`rescore_baseline`), so a stricter or fixed verifier does not read as a regression of the model: only what
the model now answers differently does. How many baseline verdicts changed is printed and recorded.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from alignment.compare import compare, items_path, read_item_records
from alignment.evaluate import load_items, run_eval, score_responses
from alignment.records import check_output_file, write_json, write_jsonl

log = logging.getLogger(__name__)
SHOW_FLIPS = 8  # flipped items listed per regressed capability


def settings_path(eval_json: Path) -> Path:
    return eval_json.with_name(f"{eval_json.stem}.settings.json")


def parse_tolerances(values: list[str]) -> dict[str, float]:
    """``["math=0.02", "format=0.1"]`` -> ``{"math": 0.02, "format": 0.1}``; a malformed entry is a ValueError."""
    out = {}
    for v in values:
        cap, sep, num = v.partition("=")
        try:
            if not sep or not cap:
                raise ValueError
            out[cap] = float(num)
        except ValueError:
            raise ValueError(f"--tolerance-for expects CAPABILITY=NUMBER, got {v!r}") from None
    return out


def format_table(result: dict, new_items: dict[str, dict]) -> str:
    """The comparison as a text table, then the flipped items of each regressed capability."""
    level = result["confidence"] or 0.95
    cols = ("capability", "baseline", "model", "diff", f"{level:.0%} CI", "tolerance", "right->wrong", "wrong->right")
    cols = (*cols, "status")
    rows = []
    for cap, r in result["capabilities"].items():
        if "missing_in" in r:
            status = "REGRESSED" if r["regressed"] else "ok"
            rows.append((cap, "-", "-", "-", f"missing from the {r['missing_in']} eval", "-", "-", "-", status))
            continue
        rows.append(
            (
                cap,
                f"{r['old']:.3f}",
                f"{r['new']:.3f}",
                f"{r['diff']:+.3f}",
                f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]" + ("" if r["paired"] else " unpaired"),
                f"{r['tolerance']:.3f}",
                str(len(r["flipped_to_wrong"])),
                str(len(r["flipped_to_right"])),
                "REGRESSED" if r["regressed"] else "ok",
            )
        )
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows, strict=True)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip() for row in [cols, *rows]]
    for cap in result["regressed"]:
        flips = result["capabilities"][cap].get("flipped_to_wrong", [])
        if flips:
            lines.append(f"\n{cap}: {len(flips)} items right in the baseline, wrong now:")
            for item_id in flips[:SHOW_FLIPS]:
                rec = new_items.get(item_id, {})
                text = " ".join(str(rec.get("response", "")).split())
                lines.append(f"  {item_id}: {rec.get('reason', '')}: {text[:100]!r}")
            if len(flips) > SHOW_FLIPS:
                lines.append(f"  ... and {len(flips) - SHOW_FLIPS} more (see the items file)")
    return "\n".join(lines)


SETTINGS_KEYS = ("suites", "max_items", "max_new_tokens", "backend", "seed", "samples", "temperature", "top_p")


def _json_file(path: Path, what: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {what}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); {what}") from None


def read_baseline(baseline: Path) -> dict:
    """Check every file of ``baseline`` before any model is loaded (a bad one used to surface after the whole eval):
    the summary ``X.json``, its settings ``X.settings.json`` with every key regress needs, its per-item records
    ``X.items.jsonl`` and the suites the settings name. Returns the settings."""
    summary = _json_file(baseline, "the baseline is an `alignment eval` output (make one with `alignment eval --out`)")
    if not isinstance(summary, dict) or not all(isinstance(v, dict) and "accuracy" in v for v in summary.values()):
        raise ValueError(f"{baseline}: not an `alignment eval` summary ({{capability: {{accuracy, n}}}})")
    path = settings_path(baseline)
    s = _json_file(path, "the baseline's eval settings (written by `alignment eval` beside its output) are needed")
    missing = [k for k in SETTINGS_KEYS if not isinstance(s, dict) or k not in s]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)} (the settings `alignment eval` writes)")
    if not items_path(baseline).is_file():
        raise FileNotFoundError(f"{items_path(baseline)} not found: the baseline's per-item results are needed")
    if not read_item_records(baseline):  # also names file:line of a malformed record
        raise ValueError(f"{items_path(baseline)}: no item records")
    load_items(s["suites"], s["max_items"])  # the suites exist and parse
    return s


def rescore_baseline(baseline: Path, suites: list[str], max_items: int | None, out: Path) -> dict:
    """Verify ``baseline``'s stored responses again against today's suite items and verifiers; write the result as an
    eval output at ``out`` (``X.json`` + ``X.items.jsonl``). A record whose item is no longer in the suites, or that
    holds no response, keeps its stored verdict. Returns ``{"changed": [ids whose verdict changed], "rescored": n}``.
    """
    records = read_item_records(baseline)
    items = {i["id"]: i for i in load_items(suites, max_items)}
    known = [i for i in records if i in items and ("response" in records[i] or "samples" in records[i])]
    greedy = [i for i in known if "response" in records[i]]
    sampled = [i for i in known if "response" not in records[i]]
    fresh: dict[str, dict] = {}
    if greedy:
        _, recs = score_responses(
            [items[i] for i in greedy],
            [records[i]["response"] for i in greedy],
            [[records[i].get("finish_reason")] for i in greedy],
            [[records[i].get("tokens")] for i in greedy],
        )
        fresh |= {r["id"]: r for r in recs}
    if sampled:
        samples = [records[i]["samples"] for i in sampled]
        if len({len(s) for s in samples}) == 1:
            _, recs = score_responses(
                [items[i] for i in sampled],
                [[s["response"] for s in ss] for ss in samples],
                [[s.get("finish_reason") for s in ss] for ss in samples],
                [[s.get("tokens") for s in ss] for ss in samples],
            )
            fresh |= {r["id"]: r for r in recs}
    merged = {i: fresh.get(i, r) for i, r in records.items()}
    changed = sorted(i for i in fresh if bool(fresh[i]["correct"]) != bool(records[i]["correct"]))
    by_cap: dict[str, list[float]] = {}
    for r in merged.values():
        by_cap.setdefault(r["capability"], []).append(float(r["score"]) if "score" in r else float(bool(r["correct"])))
    summary = {c: {"accuracy": round(sum(v) / len(v), 4), "n": len(v)} for c, v in sorted(by_cap.items())}
    write_jsonl(merged.values(), items_path(out))
    write_json(summary, out)
    return {"changed": changed, "rescored": len(fresh)}


def regress(
    model: str,
    baseline: Path,
    out: Path,
    *,
    tolerance: float = 0.05,
    tolerances: dict[str, float] | None = None,
    confidence: float | None = 0.95,
    max_items: int | None = None,
) -> dict:
    """Evaluate ``model`` with ``baseline``'s settings into ``out`` and compare with the baseline re-verified by
    today's verifiers (:func:`rescore_baseline`, ``out/baseline.rescored.json``); returns :func:`compare`'s result
    with ``baseline_rescored`` (also written to ``out/regress.json``)."""
    baseline = Path(baseline)
    s = read_baseline(baseline)
    eval_json = check_output_file(Path(out) / "eval.json")
    run_eval(
        model,
        s["suites"],
        eval_json,
        max_items=max_items if max_items is not None else s["max_items"],
        max_new_tokens=s["max_new_tokens"],
        backend=s["backend"],
        seed=s["seed"],
        samples=s["samples"],
        temperature=s["temperature"],
        top_p=s["top_p"],
    )
    rescored = Path(out) / "baseline.rescored.json"
    check = rescore_baseline(baseline, s["suites"], max_items if max_items is not None else s["max_items"], rescored)
    if check["changed"]:
        log.warning(
            "%d of the baseline's %d stored responses get another verdict from today's verifiers (%s); the comparison "
            "uses the new verdicts",
            len(check["changed"]),
            check["rescored"],
            ", ".join(check["changed"][:SHOW_FLIPS]) + (" ..." if len(check["changed"]) > SHOW_FLIPS else ""),
        )
    result = compare(eval_json, rescored, tolerance=tolerance, tolerances=tolerances, confidence=confidence)
    result |= {"model": model, "baseline": str(baseline), "tolerance": tolerance, "baseline_rescored": check}
    write_json(result, Path(out) / "regress.json")
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="HF model folder, or 'embedded'")
    parser.add_argument("--baseline", required=True, help="an `alignment eval` output JSON (items + settings beside)")
    parser.add_argument("--out", default=None, help="where the model's eval goes (default: runs/regress/<model name>)")
    parser.add_argument("--tolerance", type=float, default=0.05, help="largest accepted drop in accuracy (0.05)")
    parser.add_argument(
        "--tolerance-for", action="append", default=[], metavar="CAP=NUM", help="a capability's own tolerance"
    )
    parser.add_argument(
        "--confidence",
        type=float,
        default=0.95,
        help="a drop must also be significant at this level (paired interval below zero); 0 = the point drop alone",
    )
    parser.add_argument("--max-items", type=int, default=None, help="only the first N items of each suite")


def run(args: argparse.Namespace) -> None:
    """``alignment regress``: exits 1 when a capability regressed."""
    out = Path(args.out) if args.out else Path("runs") / "regress" / Path(args.model).name
    result = regress(
        args.model,
        Path(args.baseline),
        out,
        tolerance=args.tolerance,
        tolerances=parse_tolerances(args.tolerance_for),
        confidence=args.confidence or None,
        max_items=args.max_items,
    )
    print(f"model {args.model} against baseline {args.baseline} (eval in {out}):")
    changed = result["baseline_rescored"]["changed"]
    if changed:
        print(
            f"({len(changed)} baseline items re-verified with today's verifiers changed verdict: {', '.join(changed)})"
        )
    print(format_table(result, read_item_records(out / "eval.json")))
    if result["regressed"]:
        print(f"\nFAILED: {', '.join(result['regressed'])} regressed beyond tolerance", file=sys.stderr)
        sys.exit(1)
    print("\nOK: no capability regressed beyond its tolerance")
