"""Comparing two evals: paired intervals on shared items, the unpaired fallback, flipped items, missing data."""

import json

import pytest

from alignment.compare import compare, describe, difference_interval
from rounds.layout import GateCheck


def _write(path, acc: dict, items: list[tuple[str, str, bool]] | None) -> None:
    path.write_text(json.dumps({c: {"accuracy": a, "n": n} for c, (a, n) in acc.items()}))
    if items is not None:
        lines = [json.dumps({"id": i, "capability": c, "correct": ok}) for i, c, ok in items]
        path.with_name(f"{path.stem}.items.jsonl").write_text("\n".join(lines) + "\n")


def test_paired_interval_is_narrower_than_unpaired_on_the_same_items():
    old = [True] * 30 + [False] * 30
    new = [True] * 27 + [False] * 33  # three items flipped to wrong, the rest identical
    d, lo, hi = difference_interval(new, old, paired=True, confidence=0.95)
    d2, lo2, hi2 = difference_interval(new, old, paired=False, confidence=0.95)
    assert d == pytest.approx(-0.05) and d2 == pytest.approx(-0.05)
    assert hi - lo < (hi2 - lo2) / 2
    with pytest.raises(ValueError, match="confidence"):
        difference_interval(new, old, paired=True, confidence=95)


def test_compare_lists_flips_and_falls_back_to_unpaired_without_items(tmp_path):
    items_old = [(f"m{i}", "math", i < 8) for i in range(10)]
    items_new = [(f"m{i}", "math", i < 2) for i in range(10)]
    _write(tmp_path / "old.json", {"math": (0.8, 10), "chat": (0.5, 10)}, items_old)
    _write(tmp_path / "new.json", {"math": (0.2, 10)}, items_new)
    out = compare(tmp_path / "new.json", tmp_path / "old.json", tolerance=0.05)
    assert out["regressed"] == ["chat", "math"]  # chat can no longer be checked: it counts as a regression
    math = out["capabilities"]["math"]
    assert math["paired"] and math["flipped_to_wrong"] == [f"m{i}" for i in range(2, 8)]
    assert describe("math", math).startswith("math: 0.800 -> 0.200 (-0.600, CI [")
    assert describe("chat", out["capabilities"]["chat"]) == "chat: missing from the new eval"

    _write(tmp_path / "bare.json", {"math": (0.7, 10)}, None)  # no items file: the unpaired interval
    out = compare(tmp_path / "bare.json", tmp_path / "old.json", tolerance=0.05)
    assert not out["capabilities"]["math"]["paired"] and out["capabilities"]["math"]["flipped_to_wrong"] == []
    assert out["regressed"] == ["chat"]  # math: -0.10 on 10 items is within noise
    # every per-capability check reads back as the gate's promotion.json says (rounds.layout.GateCheck)
    checks = {cap: GateCheck.parse(c, "promotion.json").model_dump() for cap, c in out["capabilities"].items()}
    assert checks["chat"]["missing_in"] == "new" and checks["math"]["diff"] == out["capabilities"]["math"]["diff"]


def test_a_malformed_items_line_names_the_file_and_line(tmp_path):
    _write(tmp_path / "old.json", {"math": (0.5, 2)}, [("a", "math", True), ("b", "math", False)])
    _write(tmp_path / "new.json", {"math": (0.5, 2)}, [("a", "math", True)])
    with (tmp_path / "new.items.jsonl").open("a") as f:
        f.write('{"id": "b"}\n')
    with pytest.raises(ValueError, match=r"new.items.jsonl:2: not an eval item record"):
        compare(tmp_path / "new.json", tmp_path / "old.json", tolerance=0.05)
