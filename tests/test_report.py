"""rounds/report/: report.html from a round folder (synthetic rounds here; the tiny real run in the e2e tests),
its check in headless Chromium, and notebooks/inspect_round.ipynb executed against a real round."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from rounds import report
from rounds.layout import ArtifactError, GateCheck, Promotion
from rounds.report import check_in_browser, load_round, write_report

ROOT = Path(__file__).resolve().parent.parent
SECTION_IDS = [key for key, _ in report.SECTIONS]
HOSTILE = "<script>alert('x')</script> & <b>bold</b>"
needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
    reason="headless check needs Chromium on PATH (apt-get install -y chromium)",
)


def _messages(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _write_round(run: Path, index: int, *, promotion: dict | str | None = None, eval_ok: bool = True) -> Path:
    """A small but complete round folder: 3 capabilities (chat unverifiable, with no DPO pair), filter drops,
    selection.json in the current format, eval.json and optionally promotion.json."""
    d = run / f"round-{index}"
    d.mkdir(parents=True)
    prompts = [
        {"prompt_id": "math-0", "capability": "math", "messages": _messages("What is 2 + 2?"), "answer": "4"},
        {"prompt_id": "math-1", "capability": "math", "messages": _messages("What is 3 + 3?"), "answer": "6"},
        {"prompt_id": "inst-0", "capability": "instruction", "messages": _messages(f"Say hi. {HOSTILE}")},
        {"prompt_id": "chat-0", "capability": "chat", "messages": _messages("Tell me about tea.")},
    ]
    pd.DataFrame(prompts).to_parquet(d / "prompts.parquet")
    cands = []
    texts = {
        "math-0": ["The answer is 4.", "It is 5.", "2 + 2 = 4", "I think 22"],
        "math-1": ["6", "7", "It is 6.", "36"],
        "inst-0": ["hi", HOSTILE, "Hello there friend", "hi!!!"],
        "chat-0": ["Tea is a drink.", "Tea comes from Camellia sinensis.", "tea " * 40, "Tea."],
    }
    for pid, ts in texts.items():
        for k, t in enumerate(ts):
            n = 10 * index + 5 * k + len(t.split())
            cands.append(
                {
                    "prompt_id": pid,
                    "candidate_id": f"{pid}#{k}",
                    "text": t,
                    "finish_reason": "length" if t.startswith("tea tea") else "stop",
                    "num_tokens": n,
                    "max_tokens": 64,
                    "mean_logprob": -0.3 * (k + 1),
                }
            )
    pd.DataFrame(cands).to_parquet(d / "candidates.parquet")
    filtered = pd.DataFrame(cands)
    filtered["drop_reason"] = None
    filtered["drop_detail"] = None
    filtered["flags"] = [["exclamation"] if t == "hi!!!" else [] for t in filtered["text"]]
    filtered.loc[filtered["text"].str.startswith("tea tea"), ["drop_reason", "drop_detail"]] = ["truncated", "64"]
    filtered.to_parquet(d / "filtered.parquet")
    kept = filtered[filtered["drop_reason"].isna()]
    verdict = {
        "The answer is 4.": True,
        "2 + 2 = 4": True,
        "6": True,
        "It is 6.": True,
        "hi": True,
        "Hello there friend": False,
    }
    rows = []
    for i, c in enumerate(kept.to_dict("records")):
        cap = c["prompt_id"].split("-")[0]
        verified = None if cap == "chat" else verdict.get(c["text"], False)
        rows.append(
            {
                "prompt_id": c["prompt_id"],
                "candidate_id": c["candidate_id"],
                "text": c["text"],
                "verified": verified,
                "verifier_reason": "no verifier"
                if verified is None
                else ("ok" if verified else "math: expected 4, got 5"),
                "rm_score": float(i % 5) - 2.0 + (1.5 if verified else 0.0),
                "mean_logprob": c["mean_logprob"],  # the verify stage carries it on, as the real one does
            }
        )
    verdicts = pd.DataFrame(rows)
    verdicts.drop(columns="rm_score").to_parquet(d / "verdicts.parquet")
    scores = verdicts.copy()
    scores["score"] = scores["rm_score"] - 10.0 * (scores["verified"] == False)  # noqa: E712 (None stays unpenalised)
    scores.to_parquet(d / "scores.parquet")
    pd.DataFrame(
        [
            {"prompt_id": "math-0", "capability": "math", "chosen": "The answer is 4.", "rejected": "It is 5.",
             "margin": 11.0, "norm_margin": 3.0},
            {"prompt_id": "inst-0", "capability": "instruction", "chosen": "hi", "rejected": HOSTILE,
             "margin": 9.5, "norm_margin": 2.5},
        ]
    ).to_parquet(d / "dpo.parquet")  # fmt: skip
    selection = {
        "prompts": 4,
        "sft": {
            "kept": 4,
            "new": 3,
            "new_by_capability": {"chat": 1, "instruction": 1, "math": 1},
            "carried_over": 1,
            "carried_by_round": {"1": 1},
            "dropped": {"no candidate passed the verifier": 1},
            "dropped_by_capability": {"math": {"no candidate passed the verifier": 1}},
        },
        "dpo": {
            "kept": 2,
            "kept_by_capability": {"instruction": 1, "math": 1},
            "mean_margin": 10.25,
            "dropped": {"margin below min_margin": 2},
            "dropped_by_capability": {"chat": {"margin below min_margin": 1}, "math": {"margin below min_margin": 1}},
        },
    }
    # the verifier counts and the RM's AUC as the select stage writes them, from these scores
    from reward.select import combine_scores, selection_report

    prompts = {pid: {"capability": pid.split("-")[0], "messages": []} for pid in scores["prompt_id"].unique()}
    records = [
        {**r, "verified": None if pd.isna(r["verified"]) else bool(r["verified"])} for r in scores.to_dict("records")
    ]
    real = selection_report(combine_scores(records), prompts, [], [], {}, {})
    selection |= {k: real[k] for k in ("verifier", "candidates_by_capability", "rm_pass_over_fail_auc")}
    (d / "selection.json").write_text(json.dumps(selection))
    if eval_ok:
        ev = {
            "model": {"math": {"accuracy": 0.5 + 0.1 * index, "n": 10}, "instruction": {"accuracy": 0.4, "n": 10}},
            "start": {"math": {"accuracy": 0.4 + 0.1 * index, "n": 10}, "instruction": {"accuracy": 0.4, "n": 10}},
            "start_model": str(run / f"round-{index - 1}" / "model") if index > 1 else "/models/base",
            "model_eval_file": f"round-{index}/eval_model.json",
            "start_eval_file": f"round-{index}/eval_start.json",
        }
        (d / "eval.json").write_text(json.dumps(ev))
    if isinstance(promotion, dict):
        (d / "promotion.json").write_text(json.dumps(promotion))
    elif isinstance(promotion, str):
        (d / "promotion.json").write_text(promotion)
    return d


PROMOTION = {
    "promoted": False,
    "reasons": ["math: 0.700 -> 0.600 (-0.100, CI [-0.300, +0.100], tolerance 0.050)"],
    "compared_to": "round-1/model",
    "capabilities": {
        "math": {"new": 0.6, "old": 0.7, "diff": -0.1, "ci_low": -0.3, "ci_high": 0.1, "tolerance": 0.05,
                 "regressed": True},
        "instruction": {"new": 0.4, "old": 0.4, "drop": 0.0},
    },
}  # fmt: skip


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "myrun"
    _write_round(run, 1, promotion="{not json")  # a broken promotion.json reads as absent
    _write_round(run, 2, promotion=PROMOTION)
    return run


def test_report_has_every_section_and_is_self_contained(run_dir: Path) -> None:
    out = write_report(run_dir / "round-2")
    assert out == run_dir / "round-2" / "report.html"
    page = out.read_text()
    for key in SECTION_IDS:
        assert f'<section id="{key}">' in page
    images = re.findall(r"<img [^>]*>", page)
    assert len(images) >= 5
    assert all('src="data:image/png;base64,' in img for img in images)
    # nothing loaded from anywhere: no external src/href, stylesheet links or script sources
    assert not re.search(r'(src|href)="(?!data:|#)', page)
    assert "<link" not in page and "<script src" not in page
    assert "document.body.dataset.rendered" in page


def test_report_escapes_candidate_and_prompt_text(run_dir: Path) -> None:
    page = write_report(run_dir / "round-2").read_text()
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page


def test_missing_core_files_name_the_file(run_dir: Path) -> None:
    (run_dir / "round-2" / "selection.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"round-2/selection\.json"):
        write_report(run_dir / "round-2")
    (run_dir / "round-1" / "scores.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=r"round-1/scores\.parquet"):
        write_report(run_dir / "round-1")
    with pytest.raises(FileNotFoundError, match="no such round folder"):
        write_report(run_dir / "round-9")


def test_optional_files_missing_still_render(run_dir: Path) -> None:
    d = run_dir / "round-2"
    for name in ("dpo.parquet", "candidates.parquet", "filtered.parquet", "verdicts.parquet", "promotion.json"):
        (d / name).unlink()
    for name in ("eval.json",):
        (run_dir / "round-1" / name).unlink()
    page = write_report(d).read_text()
    assert page.count("no data for this plot") == 2  # margins and lengths
    assert "nothing to show" in page  # the filter table
    table = report.eval_table(load_round(d))
    assert list(table["round"].unique()) == ["round-2"]
    assert set(table["promotion"]) == {"—"}


def test_eval_table_across_rounds_with_promotion(run_dir: Path) -> None:
    table = report.eval_table(load_round(run_dir / "round-2"))
    assert list(dict.fromkeys(table["round"])) == ["round-1", "round-2"]
    r1 = table[table["round"] == "round-1"]
    assert set(r1["promotion"]) == {"—"}  # promotion.json there is not valid JSON
    assert set(r1["start model"]) == {"/models/base"}
    r2 = table[table["round"] == "round-2"].set_index("capability")
    assert set(r2["promotion"]) == {"not promoted"}
    assert r2.loc["math", "start model"] == "round-1/model"
    assert r2.loc["math", "accuracy"] == pytest.approx(0.7)
    assert r2.loc["math", "change"] == pytest.approx(0.1)
    assert r2.loc["math", "gate check"] == "-0.100 CI [-0.300, +0.100], tolerance 0.050, regressed"
    assert r2.loc["instruction", "gate check"] == "drop 0.000"
    page = write_report(run_dir / "round-2").read_text()
    assert 'class="not-promoted">not promoted' in page
    assert "tolerance 0.050" in page


def test_promotion_and_gate_checks_as_text() -> None:
    assert report.promotion_decision(None) == "—"
    assert report.promotion_decision(Promotion(promoted=True, reasons=[], compared_to="base")) == "promoted"
    assert report.gate_check(GateCheck(missing_in="new")) == "missing from the new eval"
    assert report.gate_check(None) is None
    assert report.gate_check(GateCheck()) is None


def test_broken_optional_files_are_left_out_naming_file_and_key(run_dir: Path, caplog) -> None:
    """A promotion.json that is not JSON (round 1 of the fixture) or that lacks a key reads as absent, with a
    warning that names the file and the key; the page still renders."""
    promo = json.loads((run_dir / "round-2" / "promotion.json").read_text())
    del promo["promoted"]
    (run_dir / "round-2" / "promotion.json").write_text(json.dumps(promo))
    with caplog.at_level("WARNING"):
        data = load_round(run_dir / "round-2")
    assert data.promotion is None
    assert "round-2/promotion.json: promoted: field required" in caplog.text
    with caplog.at_level("WARNING"):
        load_round(run_dir / "round-1")
    assert "round-1/promotion.json: not JSON" in caplog.text


def test_selection_json_missing_a_key_fails_naming_it(run_dir: Path) -> None:
    sel = json.loads((run_dir / "round-2" / "selection.json").read_text())
    sel["verifier"] = sel.pop("verifier")["math"]  # a writer that changed the nesting
    (run_dir / "round-2" / "selection.json").write_text(json.dumps(sel))
    with pytest.raises(ArtifactError, match=r"round-2/selection.json: verifier.verified: input should be"):
        load_round(run_dir / "round-2")


def test_tables(run_dir: Path) -> None:
    data = load_round(run_dir / "round-2")
    prev = report.previous_round(data)
    assert prev is not None and prev.name == "round-1"
    assert data.capabilities == ["chat", "instruction", "math"]

    rates = report.pass_rates(data, prev)
    assert rates.loc["chat", "unverifiable"] == 3 and pd.isna(rates.loc["chat", "pass rate"])
    assert rates.loc["math", "passed"] == 4 and rates.loc["math", "failed"] == 4
    assert rates.loc["math", "pass rate"] == pytest.approx(0.5)
    assert rates.loc["math", "previous round"] == pytest.approx(0.5)
    assert "math: expected N, got N (4)" in rates.loc["math", "top failures"]

    drops = report.filter_drops(data)
    assert drops.loc["kept", "total"] == 15 and drops.loc["truncated", "chat"] == 1
    flags = report.style_flags(data)
    assert flags.loc[("exclamation", "instruction"), "flagged"] == 1

    sel = report.selection_outcomes(data).set_index(["set", "outcome"])
    assert sel.loc[("SFT", "kept (new rows)"), "total"] == 3
    assert sel.loc[("SFT", "carried over (round 1: 1)"), "total"] == 1
    assert sel.loc[("DPO", "dropped: margin below min_margin"), "chat"] == 1
    assert sel.loc[("DPO", "dropped: margin below min_margin"), "instruction"] == 0

    lengths = report.length_table(data, prev)
    assert set(lengths.index.get_level_values("round")) == {"round-1", "round-2"}
    assert lengths.loc[("chat", "round-2"), "truncated"] == pytest.approx(0.25)
    assert lengths.loc[("math", "round-2"), "mean"] > lengths.loc[("math", "round-1"), "mean"]


def test_examples_best_and_worst_without_repeats(run_dir: Path) -> None:
    data = load_round(run_dir / "round-2")
    ex = report.examples(data, k=2)
    chat = ex[ex["capability"] == "chat"]  # 3 scored chat candidates: 2 best, then the 1 left as worst
    assert list(chat["which"]) == ["best", "best", "worst"]
    assert chat["candidate_id"].is_unique
    math = ex[ex["capability"] == "math"]
    best, worst = math[math["which"] == "best"], math[math["which"] == "worst"]
    assert best["score"].min() >= worst["score"].max()
    assert set(best["verdict"]) == {"pass"} and set(worst["verdict"]) == {"fail"}
    assert worst["score"].iloc[0] == data.scores.loc[data.scores["capability"] == "math", "score"].min()
    assert math["prompt"].iloc[0].startswith("What is")


def test_round_without_previous_or_index(tmp_path: Path, run_dir: Path) -> None:
    solo = tmp_path / "solo"
    shutil.copytree(run_dir / "round-1", solo)
    data = load_round(solo)
    assert data.index is None and report.previous_round(data) is None
    assert "previous round" not in report.pass_rates(data).columns
    page = write_report(solo).read_text()
    assert "no previous round in this run folder" in page
    assert list(report.eval_table(data)["round"].unique()) == ["solo"]


def test_cli_report(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from alignment.cli import main

    main(["report", str(run_dir / "round-2")])
    assert capsys.readouterr().out.strip() == str(run_dir / "round-2" / "report.html")
    (run_dir / "round-2" / "scores.parquet").unlink()
    with pytest.raises(SystemExit) as e:
        main(["report", str(run_dir / "round-2")])
    assert e.value.code == 2
    assert "scores.parquet" in capsys.readouterr().err


def test_chromium_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(report.ChromiumNotFound, match="apt-get install -y chromium"):
        check_in_browser(tmp_path / "x.html")


@needs_chromium
def test_check_in_browser_ok_and_broken(run_dir: Path, tmp_path: Path) -> None:
    page = write_report(run_dir / "round-2")
    shot = tmp_path / "shot.png"
    n_images = page.read_text().count("<img ")
    assert check_in_browser(page, shot) == f"ok {n_images} images"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    broken = tmp_path / "broken.html"
    broken.write_text(
        page.read_text().replace('src="data:image/png;base64,', 'src="data:image/png;base64,AAAA', 1), encoding="utf-8"
    )
    assert check_in_browser(broken) == f"broken 1 of {n_images} images"


# --- end to end: the tiny real run ----------------------------------------------------------------------------


@pytest.mark.e2e
def test_report_of_a_real_round(e2e_run: Path, tmp_path: Path) -> None:
    round_dir = e2e_run / "round-2"
    out = write_report(round_dir)
    page = out.read_text()
    for key in SECTION_IDS:
        assert f'<section id="{key}">' in page
    data = load_round(round_dir)
    for cap in data.capabilities:
        assert f"<h3>{cap}</h3>" in page  # best/worst examples of every capability
    table = report.eval_table(data)
    assert {"round-1", "round-2"} <= set(table["round"])
    assert table["accuracy"].notna().all()
    promotion = Promotion.read_optional(round_dir / "promotion.json")
    decision = set(table.loc[table["round"] == "round-2", "promotion"])
    assert decision == {report.promotion_decision(promotion)}
    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        pytest.skip("headless check needs Chromium on PATH (apt-get install -y chromium)")
    shot = tmp_path / "round-2.png"
    rendered = check_in_browser(out, shot)
    assert rendered == f"ok {page.count('<img ')} images"
    assert shot.stat().st_size > 10_000


@pytest.mark.e2e
def test_notebook_runs_on_a_real_round(e2e_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("ROUND_DIR", str(e2e_run / "round-2"))  # the kernel inherits this environment
    nb = nbformat.read(ROOT / "notebooks" / "inspect_round.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook cleared"
    client = NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(ROOT / "notebooks")}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) + str(o.get("data", {}).get("text/html", ""))
        for o in outputs
    )
    assert str(e2e_run / "round-2") in text
    assert "pass rate" in text and "candidates scored" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 5


def test_fluency_plot_pairs_log_probs_with_rm_scores(run_dir: Path) -> None:
    # scores.parquet carries mean_logprob too (the verify stage passes it on): the merge must not split it in two
    fig = report.plots.plot_fluency(load_round(run_dir / "round-2"))
    assert fig is not None
    assert fig.axes[1].get_title().startswith("scored candidates: Spearman")
