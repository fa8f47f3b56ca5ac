"""Writing the page: report.html from the tables and plots (PNGs embedded as base64, nothing loaded from anywhere),
and the headless-Chromium check that it renders (:func:`check_in_browser`)."""

from __future__ import annotations

import argparse
import base64
import html
import math
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from rounds.report.data import (
    EVAL_COLUMNS,
    EXAMPLE_CHARS,
    NO_VALUE,
    RoundData,
    _num,
    eval_table,
    examples,
    filter_drops,
    length_table,
    load_round,
    margin_sweep,
    pass_rates,
    previous_round,
    reward_model_trust,
    selection_outcomes,
    style_flags,
    summary,
)
from rounds.report.plots import (
    figure_png,
    plot_eval,
    plot_fluency,
    plot_lengths,
    plot_margins,
    plot_pass_rates,
    plot_scores,
)

MAX_SCREENSHOT_HEIGHT = 16000
SCREENSHOT_WIDTH = 1280


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1240px;
       padding: 16px 24px; color: #212121; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #e0e0e0; padding-bottom: 4px;
margin-top: 1.8em; } h3 { margin-bottom: 0.3em; }
p.note { color: #616161; font-size: 0.9em; margin-top: 0.2em; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.9em; }
th, td { border: 1px solid #e0e0e0; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.promotion { max-width: 420px; } .nowrap { white-space: nowrap; }
img { max-width: 100%; display: block; margin: 8px 0; }
.pass { color: #2e7d32; font-weight: 600; } .fail { color: #c62828; font-weight: 600; }
.na { color: #757575; font-weight: 600; }
.promoted { color: #2e7d32; font-weight: 600; } .not-promoted { color: #c62828; font-weight: 600; }
pre.text { white-space: pre-wrap; word-break: break-word; margin: 0; font-size: 0.85em; max-width: 520px;
           background: #fafafa; padding: 4px; }
table.examples td { max-width: 540px; }
nav a { margin-right: 12px; }
"""

SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (img) { return !(img.complete && img.naturalWidth > 0); });
  document.body.dataset.rendered = broken.length
    ? "broken " + broken.length + " of " + images.length + " images"
    : "ok " + images.length + " images";
  document.body.dataset.height = String(document.documentElement.scrollHeight);
});
"""

SECTIONS = [
    ("summary", "Summary"),
    ("scores", "Reward scores"),
    ("margins", "DPO pair margins"),
    ("trust", "Reward model and fluency"),
    ("verifier", "Verifier pass rates"),
    ("drops", "Kept and dropped"),
    ("lengths", "Response lengths"),
    ("eval", "Eval across rounds"),
    ("examples", "Best and worst examples"),
]


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, column: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return NO_VALUE
    if isinstance(value, float):
        if any(k in column for k in ("rate", "truncated", "previous round")):
            return f"{value:.1%}"
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _table(df: pd.DataFrame | None, index: bool = True, css: str = "") -> str:
    """An HTML table from a frame, every cell escaped, numbers right-aligned, missing values as —."""
    if df is None or df.empty:
        return '<p class="note">nothing to show</p>'
    frame = df.reset_index() if index and not isinstance(df.index, pd.RangeIndex) else df
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for col, value in zip(frame.columns, row, strict=True):
            cls = ' class="num"' if _is_num(value) else ""
            cells.append(f"<td{cls}>{_esc(_fmt(value, str(col)))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cls = f' class="{css}"' if css else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _img(fig: Figure | None, alt: str) -> str:
    if fig is None:
        return '<p class="note">no data for this plot</p>'
    data = base64.b64encode(figure_png(fig)).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _clip(text: Any, limit: int = EXAMPLE_CHARS) -> str:
    text = "" if text is None else str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def _verdict_html(verdict: str, reason: Any) -> str:
    cls = {"pass": "pass", "fail": "fail"}.get(verdict, "na")
    out = f'<span class="{cls}">{_esc(verdict)}</span>'
    if reason is not None and not (isinstance(reason, float) and math.isnan(reason)) and str(reason):
        out += f"<br>{_esc(reason)}"
    return out


def _examples_html(data: RoundData, k: int) -> str:
    df = examples(data, k)
    if df.empty:
        return '<p class="note">no scored candidates</p>'
    parts = []
    for cap, sub in df.groupby("capability", sort=True):
        rows = []
        for r in sub.itertuples(index=False):
            rows.append(
                "<tr>"
                f'<td class="nowrap">{_esc(r.which)}<br><small>{_esc(r.candidate_id)}</small></td>'
                f'<td><pre class="text">{_esc(_clip(r.prompt))}</pre></td>'
                f'<td><pre class="text">{_esc(_clip(r.response))}</pre></td>'
                f'<td class="num">{_esc(_fmt(r.rm_score))}</td>'
                f'<td class="num">{_esc(_fmt(r.score))}</td>'
                f"<td>{_verdict_html(r.verdict, r.verifier_reason)}</td>"
                "</tr>"
            )
        parts.append(
            f"<h3>{_esc(cap)}</h3>"
            '<table class="examples"><thead><tr><th></th><th>prompt</th><th>response</th><th>RM score</th>'
            "<th>score</th><th>verifier</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        )
    return "".join(parts)


def _eval_html(data: RoundData) -> str:
    table = eval_table(data)
    if table.empty:
        return '<p class="note">no round of this run has eval.json yet</p>'
    head = "".join(f"<th>{_esc(c)}</th>" for c in EVAL_COLUMNS if c != "reasons")
    body = []
    for rnd, sub in table.groupby("round", sort=False):
        first = sub.iloc[0]
        decision = first["promotion"]
        cls = {"promoted": "promoted", "not promoted": "not-promoted"}.get(decision, "")
        promo = f'<span class="{cls}">{_esc(decision)}</span>'
        if isinstance(first["reasons"], str) and first["reasons"]:
            promo += "<br><small>" + _esc(first["reasons"]) + "</small>"
        span = f' rowspan="{len(sub)}"'
        for i, r in enumerate(sub.to_dict("records")):
            change = _num(r["change"])
            cells = [
                f'<td{span} class="nowrap">{_esc(rnd)}</td><td{span}>{_esc(_fmt(r["start model"]))}</td>'
                if i == 0
                else "",
                f"<td>{_esc(r['capability'])}</td>",
                f'<td class="num">{_esc(_fmt(r["n"]))}</td>',
                f'<td class="num">{_esc(_fmt(r["start accuracy"]))}</td>',
                f'<td class="num">{_esc(_fmt(r["accuracy"]))}</td>',
                f'<td class="num">{_esc(NO_VALUE if change is None else f"{change:+.4g}" if change else "0")}</td>',
                f"<td>{_esc(_fmt(r['gate check']))}</td>",
                f'<td{span} class="promotion">{promo}</td>' if i == 0 else "",
            ]
            body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_report(round_dir: Path | str, examples_per_capability: int = 2) -> str:
    """The report page of a round folder as an HTML string (see :func:`write_report`)."""
    data = load_round(round_dir)
    previous = previous_round(data)
    run = data.dir.parent.name
    title = f"{run} / {data.name}"
    prev_note = f"against {previous.name}" if previous is not None else "(no previous round in this run folder)"
    sections = {
        "summary": _table(summary(data), index=False),
        "scores": _img(plot_scores(data), "reward model score histograms")
        + '<p class="note">Reward-model score of every candidate that passed the filters, stacked by verifier '
        "verdict. The combined score used for ranking subtracts a penalty from every verifier failure.</p>",
        "margins": _img(plot_margins(data), "pair margin histograms")
        + '<p class="note">RM margin: chosen minus rejected reward-model score; P(chosen better) = sigmoid(margin). '
        "<code>selection.min_margin</code> applies to pairs only the RM decides (same verifier tier); the table "
        "shows how many of those each threshold removes.</p>" + _table(margin_sweep(data), index=False),
        "trust": _table(reward_model_trust(data), index=False)
        + '<p class="note">Held-out pairs share no prompt and no response with training pairs. AUC: how often '
        "the RM scores a passing candidate above a failing one of the same prompt (0.5 is chance).</p>"
        + (_img(plot_fluency(data), "fluency") if plot_fluency(data) is not None else ""),
        "verifier": _img(plot_pass_rates(data, previous), "verifier pass rates") + _table(pass_rates(data, previous)),
        "drops": "<h3>Filters (candidates)</h3>"
        + _table(filter_drops(data))
        + (f"<h3>Style flags</h3>{_table(style_flags(data))}" if style_flags(data) is not None else "")
        + "<h3>Selection (selection.json)</h3>"
        + _table(selection_outcomes(data), index=False),
        "lengths": f'<p class="note">Candidates generated in {_esc(data.name)} {_esc(prev_note)}.</p>'
        + _img(plot_lengths(data, previous), "response length histograms")
        + _table(length_table(data, previous)),
        "eval": _img(plot_eval(data), "eval accuracy across rounds")
        + _eval_html(data)
        + '<p class="note">Start model: the checkpoint the round started from and was compared with (the last '
        "promoted model). Gate check and promotion: from the round's promotion.json (— when it has none).</p>",
        "examples": f'<p class="note">Per capability the {examples_per_capability} highest and lowest scored '
        "candidates (combined score).</p>" + _examples_html(data, examples_per_capability),
    }
    nav = "".join(f'<a href="#{key}">{_esc(label)}</a>' for key, label in SECTIONS)
    body = "".join(f'<section id="{key}"><h2>{_esc(label)}</h2>{sections[key]}</section>' for key, label in SECTIONS)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{CSS}</style></head>"
        f"<body><h1>Round report: {_esc(title)}</h1>"
        f'<p class="note">{_esc(data.dir.resolve())}</p><nav>{nav}</nav>{body}'
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def write_report(round_dir: Path) -> Path:
    """Write ``round_dir/report.html`` (self-contained: plots embedded, no external resources) and return its path.

    Raises FileNotFoundError naming ``scores.parquet`` or ``selection.json`` when the round folder lacks it; every
    other file is optional and its section says so when absent.
    """
    round_dir = Path(round_dir)
    page = render_report(round_dir)
    out = round_dir / "report.html"
    fd, tmp = tempfile.mkstemp(prefix=".report.html.", suffix=".tmp", dir=round_dir)
    try:
        with open(fd, "w", encoding="utf-8") as f:
            f.write(page)
        Path(tmp).chmod(0o644)
        Path(tmp).replace(out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


# --- headless Chromium ----------------------------------------------------------------------------------------


class ChromiumNotFound(RuntimeError):
    """No Chromium binary on PATH."""


def chromium_binary() -> str:
    """Path of ``chromium`` (or ``chromium-browser``) on PATH; raises ChromiumNotFound otherwise."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise ChromiumNotFound(
        "headless check needs Chromium, and neither `chromium` nor `chromium-browser` is on PATH "
        "(Debian/Ubuntu: apt-get install -y chromium)"
    )


def _chromium(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="report-chromium-") as profile:
        cmd = [
            chromium_binary(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            *args,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return proc


def _body_attribute(dom: str, name: str) -> str | None:
    body = re.search(r"<body\b[^>]*>", dom)
    if not body:
        return None
    m = re.search(rf'\b{re.escape(name)}="([^"]*)"', body.group(0))
    return html.unescape(m.group(1)) if m else None


def check_in_browser(html_path: Path, screenshot: Path | None = None, timeout: float = 120) -> str:
    """Load the page in headless Chromium and return its ``data-rendered`` value ("ok N images", or "broken ..."
    when an image did not decode, or "not rendered" when the load script did not run). With ``screenshot``, also
    save a PNG of the whole page (1280 px wide, as tall as the page up to 16000 px)."""
    url = Path(html_path).resolve().as_uri()
    # The same width as the screenshot, so the page height measured by the load script is the screenshot's.
    dom = _chromium([f"--window-size={SCREENSHOT_WIDTH},900", "--dump-dom", url], timeout).stdout
    rendered = _body_attribute(dom, "data-rendered") or "not rendered"
    if screenshot is not None:
        height = _body_attribute(dom, "data-height")
        height = min(int(height), MAX_SCREENSHOT_HEIGHT) if height and height.isdigit() else 4000
        screenshot = Path(screenshot).resolve()
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        _chromium([f"--screenshot={screenshot}", f"--window-size={SCREENSHOT_WIDTH},{height}", url], timeout)
        if not screenshot.exists():
            raise RuntimeError(f"chromium wrote no screenshot to {screenshot}")
    return rendered


def main(argv: list[str] | None = None) -> None:
    """``python -m rounds.report ROUND_DIR [--screenshot out.png]``."""
    parser = argparse.ArgumentParser(prog="python -m rounds.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("round_dir", type=Path, help="a round folder, e.g. runs/default/round-2")
    parser.add_argument("--screenshot", type=Path, help="also check the page in headless Chromium and save a PNG")
    args = parser.parse_args(argv)
    try:
        out = write_report(args.round_dir)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(out)
    if args.screenshot is not None:
        try:
            rendered = check_in_browser(out, args.screenshot)
        except ChromiumNotFound as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        print(f"chromium: {rendered}; screenshot {args.screenshot}")
        if not rendered.startswith("ok"):
            sys.exit(1)


if __name__ == "__main__":
    main()
