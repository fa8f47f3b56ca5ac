"""`alignment regress`: a model evaluated with the baseline's settings, compared item by item; exit 1 on a regression.

Unit tests fake the eval; the end-to-end test runs the real job (vLLM) on the embedded model, which passes against
the committed baseline, and on a deliberately damaged copy of it, which fails with a table of the flipped items.
"""

import json
import shutil
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
from conftest import ROOT

from alignment import regress

BASELINE = ROOT / "benchmarks" / "baselines" / "embedded.json"


def _fake_eval(right: dict[str, int], n: int = 20):
    def run_eval(model, suites, out, **settings):
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        items = [
            {"id": f"{c}-{i}", "capability": c, "correct": i < k, "reason": "r", "response": f"answer {i}"}
            for c, k in right.items()
            for i in range(n)
        ]
        out.with_name(f"{out.stem}.items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
        out.write_text(json.dumps({c: {"accuracy": k / n, "n": n} for c, k in right.items()}))
        keys = {"max_items": None, "max_new_tokens": 8, "backend": "vllm", "seed": 0, "samples": 1}
        keys |= {"temperature": 0.0, "top_p": 1.0}
        out.with_name(f"{out.stem}.settings.json").write_text(json.dumps({"suites": list(suites), **keys}))
        return {}

    return run_eval


def _args(tmp_path, **kw) -> Namespace:
    base = dict(model="m", baseline=str(tmp_path / "base.json"), out=str(tmp_path / "out"), tolerance=0.05)
    return Namespace(**{**base, "tolerance_for": [], "confidence": 0.95, "max_items": None, **kw})


def test_regress_passes_within_noise_and_fails_with_flipped_items(monkeypatch, tmp_path, capsys):
    _fake_eval({"math": 12, "format": 15})("base", ["builtin"], tmp_path / "base.json")
    monkeypatch.setattr(regress, "run_eval", _fake_eval({"math": 11, "format": 15}))
    regress.run(_args(tmp_path))  # one item of 20 lost: within noise, exit 0
    assert "OK: no capability regressed" in capsys.readouterr().out

    monkeypatch.setattr(regress, "run_eval", _fake_eval({"math": 3, "format": 15}))
    with pytest.raises(SystemExit) as exit_:
        regress.run(_args(tmp_path))
    assert exit_.value.code == 1
    out = capsys.readouterr()
    table = out.out.splitlines()
    assert table[1].split()[:2] == ["capability", "baseline"]
    math_row = next(line for line in table if line.startswith("math"))
    assert math_row.split()[1:4] == ["0.600", "0.150", "-0.450"] and math_row.endswith("REGRESSED")
    assert "math: 9 items right in the baseline, wrong now:" in out.out and "math-3: r: 'answer 3'" in out.out
    assert "FAILED: math regressed" in out.err
    saved = json.loads((tmp_path / "out" / "regress.json").read_text())
    assert saved["regressed"] == ["math"] and saved["baseline"].endswith("base.json")

    # a capability's own tolerance, and the point drop alone (no significance test)
    monkeypatch.setattr(regress, "run_eval", _fake_eval({"math": 10, "format": 15}))
    with pytest.raises(SystemExit):
        regress.run(_args(tmp_path, confidence=0))
    regress.run(_args(tmp_path, confidence=0, tolerance_for=["math=0.1"]))


def test_the_baseline_is_verified_again_with_todays_verifiers(monkeypatch, tmp_path, capsys):
    """A verifier fixed since the baseline was made (a hedge "15 or 16" no longer passes for 15) must not read as a
    regression of the model: the baseline's stored responses are verified again and the new verdict is used."""
    from alignment.evaluate import load_items

    item = next(i for i in load_items(["builtin"]) if i["capability"] == "math")
    hedge = f"The answer is {item['answer']} or {int(float(item['answer'])) + 1}."
    record = {"id": item["id"], "capability": "math", "response": hedge, "correct": True, "reason": "old"}
    record["finish_reason"] = "stop"
    _fake_eval({"math": 12, "format": 15})("base", ["builtin"], tmp_path / "base.json")
    with (tmp_path / "base.items.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")
    monkeypatch.setattr(regress, "run_eval", _fake_eval({"math": 12, "format": 15}))
    regress.run(_args(tmp_path))
    out = capsys.readouterr().out
    assert f"1 baseline items re-verified with today's verifiers changed verdict: {item['id']}" in out
    saved = json.loads((tmp_path / "out" / "regress.json").read_text())
    assert saved["baseline_rescored"] == {"changed": [item["id"]], "rescored": 1}
    rescored = json.loads((tmp_path / "out" / "baseline.rescored.json").read_text())
    assert rescored["math"] == {"accuracy": round(12 / 21, 4), "n": 21}  # the hedge counts as wrong now
    lines = (tmp_path / "out" / "baseline.rescored.items.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["reason"].startswith("math: hedged")


def test_regress_names_missing_baseline_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.json not found"):
        regress.regress("m", tmp_path / "nothing.json", tmp_path / "out")
    (tmp_path / "b.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"b\.settings\.json not found: the baseline's eval settings"):
        regress.regress("m", tmp_path / "b.json", tmp_path / "out")
    with pytest.raises(ValueError, match="CAPABILITY=NUMBER"):
        regress.parse_tolerances(["math:0.1"])


def test_committed_baseline_is_complete():
    settings = json.loads(BASELINE.with_name("embedded.settings.json").read_text())
    summary = json.loads(BASELINE.read_text())
    assert settings["suites"] == ["builtin"] and settings["samples"] == 1 and settings["temperature"] == 0.0
    assert set(summary) == {"math", "instruction", "format"} and all(v["n"] == 60 for v in summary.values())
    lines = BASELINE.with_name("embedded.items.jsonl").read_text().splitlines()
    assert len(lines) == 180


def _damaged_copy(src: str, dst: Path) -> Path:
    """The embedded model with the MLP output of every layer past the second zeroed: it still talks, badly."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    weights = load_file(str(dst / "model.safetensors"))
    for name, tensor in weights.items():
        if ".mlp.down_proj." in name and int(name.split(".layers.")[1].split(".")[0]) >= 2:
            weights[name] = torch.zeros_like(tensor)
    save_file(weights, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


@pytest.mark.e2e
def test_make_regress_passes_on_the_embedded_model_and_fails_on_a_damaged_one(embedded_model_dir, tmp_path):
    def job(model: str, out: Path) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "alignment.cli", "regress", "--model", model, "--baseline", str(BASELINE)]
        cmd += ["--out", str(out), "--max-items", "20"]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)

    ok = job(embedded_model_dir, tmp_path / "base")
    assert ok.returncode == 0, ok.stdout + ok.stderr[-3000:]
    assert "OK: no capability regressed" in ok.stdout

    damaged = _damaged_copy(embedded_model_dir, tmp_path / "damaged-model")
    bad = job(str(damaged), tmp_path / "damaged")
    assert bad.returncode == 1, bad.stdout + bad.stderr[-3000:]
    assert "REGRESSED" in bad.stdout and "items right in the baseline, wrong now" in bad.stdout
    result = json.loads((tmp_path / "damaged" / "regress.json").read_text())
    assert result["regressed"] and all(result["capabilities"][c]["n_paired"] == 20 for c in result["capabilities"])
