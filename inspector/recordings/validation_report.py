"""Validation reports: the stdout table, report.md, the score histogram and the JSON. Part of
`inspector validate`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from inspector.judge.reasons import DECISIONS

from inspector.recordings.validation_setup import GOOD_LABEL, MAX_REPORT_ROWS

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# Reports: stdout table, markdown, histogram
# ------------------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _runs(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [result, result["b"]] if "b" in result else [result]


def _summary_rows(result: dict[str, Any]) -> list[tuple[str, list[str]]]:
    runs = _runs(result)
    def row(name: str, fn) -> tuple[str, list[str]]:
        return name, [fn(r) for r in runs]
    return [
        row("configuration", lambda r: r["configuration"]),
        row("frames (n)", lambda r: str(r["n"])),
        row("OK", lambda r: str(r["ok"])),
        row("REJECT", lambda r: str(r["reject"])),
        row("FAULT", lambda r: str(r["fault"])),
        row("missing", lambda r: str(r["missing"])),
        row("false reject rate", lambda r: _pct(r["false_reject_rate"])),
        row("escape rate", lambda r: _pct(r["escape_rate"])),
        row("image AUROC", lambda r: _fmt(r["image_auroc"])),
        row("latency p50 / p99 ms", lambda r: f"{_fmt(r['latency_ms_p50'], 3)} / {_fmt(r['latency_ms_p99'], 3)}"),
        row("thresholds", lambda r: "none (scores only)" if r["scores_only"] else
            ", ".join(f"{cam} {'/'.join(_fmt(t) for t in ts)}" for cam, ts in r["thresholds"].items()) or "-"),
        row("reasons", lambda r: ", ".join(f"{k} {v}" for k, v in r["reasons"].items()) or "-"),
    ]


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(x).replace("|", "\\|") for x in row) + " |" for row in rows]
    return "\n".join(lines)


def _confusion_rows(run: dict[str, Any]) -> list[list[str]]:
    return [[name, *(str(counts[k]) for k in (*DECISIONS, "missing"))] for name, counts in run["confusion"].items()]


def _changed_rows(changed: list[dict[str, Any]]) -> list[list[str]]:
    return [[c["camera_id"], str(c["seq"]), c["part_id"], c["label"] or "-", c["source"] or "-",
             f"{c['decision_a']} -> {c['decision_b']}", f"{_fmt(c['score_a'])} / {_fmt(c['score_b'])}"]
            for c in changed[:MAX_REPORT_ROWS]]


CHANGED_HEADER = ["camera", "seq", "part", "label", "source", "decision A -> B", "score A / B"]
CONFUSION_HEADER = ["label \\ decision", *DECISIONS, "missing"]


def format_table(result: dict[str, Any]) -> str:
    """The stdout summary: headline metrics per run, confusion matrices, changed frames."""
    rec = result["recording"]
    runs = _runs(result)
    out = [f"validation of {rec['path']}: {rec['n_frames']} frames, cameras {', '.join(rec['cameras'])}"
           + (f" (truncated: {rec['truncation']})" if rec["truncated"] else ""), ""]
    rows = _summary_rows(result)
    out.append(_text_table(["", *(r["name"] for r in runs)], [[name, *values] for name, values in rows]))
    for run in runs:
        out += ["", f"confusion matrix {run['name']}:", _text_table(CONFUSION_HEADER, _confusion_rows(run))]
    if "changed" in result:
        out += ["", f"decisions changed A -> B: {result['n_changed']}"]
        if result["changed"]:
            out.append(_text_table(CHANGED_HEADER, _changed_rows(result["changed"])))
    for run in runs:
        problems = _problems(run)
        if problems:
            out += ["", f"run {run['name']}: " + "; ".join(problems)]
    return "\n".join(out)


def _problems(run: dict[str, Any]) -> list[str]:
    problems = []
    if run["missing"]:
        problems.append(f"{run['missing']} frame(s) without a verdict")
    if run["not_sent"]:  # None (unknown) after a failed replay: the replay error says it
        problems.append(f"{run['not_sent']} frame(s) not replayed")
    if run["replay_error"]:
        problems.append(f"replay failed: {run['replay_error']}")
    if run["daemon_died"]:
        problems.append("the daemon died")
    if run["timed_out"]:
        problems.append("timed out waiting for verdicts")
    if run["duplicate_verdicts"] or run["unexpected_verdicts"]:
        problems.append(f"{run['duplicate_verdicts']} duplicate / {run['unexpected_verdicts']} unexpected verdict(s)")
    return problems


def format_markdown(result: dict[str, Any]) -> str:
    """report.md: the same tables in markdown, plus per-label and per-camera breakdowns."""
    rec = result["recording"]
    runs = _runs(result)
    out = [f"# Validation of `{rec['path']}`", "",
           f"{rec['n_frames']} frames; cameras {rec['cameras']}; labels {rec['labels']}"
           + (f"; **truncated** ({rec['truncation']})" if rec["truncated"] else ""), "",
           "![scores](scores.png)", "", "## Summary", "",
           _md_table(["", *(r["name"] for r in runs)], [[name, *values] for name, values in _summary_rows(result)])]
    for run in runs:
        out += ["", f"## Run {run['name']}: {run['configuration']}", "", "### Confusion matrix", "",
                _md_table(CONFUSION_HEADER, _confusion_rows(run)), "", "### Per label", "",
                _md_table(["label", "n", "OK", "REJECT", "FAULT", "missing", "score min", "median", "max"],
                          [[label, str(s["n"]), str(s["ok"]), str(s["reject"]), str(s["fault"]), str(s["missing"]),
                            _fmt(s["score_min"]), _fmt(s["score_median"]), _fmt(s["score_max"])]
                           for label, s in run["per_label"].items()]), "", "### Per camera", "",
                _md_table(["camera", "n", "OK", "REJECT", "FAULT", "missing", "latency p99 ms"],
                          [[cam, str(s["n"]), str(s["ok"]), str(s["reject"]), str(s["fault"]), str(s["missing"]),
                            _fmt(s["latency_ms_p99"], 3)] for cam, s in run["per_camera"].items()])]
        problems = _problems(run)
        if problems:
            out += ["", "**Problems:** " + "; ".join(problems)]
    if "changed" in result:
        out += ["", f"## Decisions changed A -> B ({result['n_changed']})", ""]
        if result["changed"]:
            out.append(_md_table(CHANGED_HEADER, _changed_rows(result["changed"])))
            if result["n_changed"] > MAX_REPORT_ROWS:
                out += ["", f"(first {MAX_REPORT_ROWS}; all are in validation.json)"]
        else:
            out.append("none")
    return "\n".join(out) + "\n"


def plot_scores(result: dict[str, Any], path: str | Path) -> Path:
    """scores.png: per run, histograms of the verdict scores per label, with the thresholds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = _runs(result)
    fig, axes = plt.subplots(1, len(runs), figsize=(7 * len(runs), 4.5), squeeze=False)
    for ax, run in zip(axes[0], runs):
        by_label: dict[str, list[float]] = {}
        for r in run["frames"]:
            if r["score"] is not None:
                by_label.setdefault(r["label"] or "(none)", []).append(r["score"])
        all_scores = [s for scores in by_label.values() for s in scores]
        bins = np.histogram_bin_edges(all_scores, bins=30) if all_scores else 10
        for label in sorted(by_label, key=lambda name: (name != GOOD_LABEL, name)):
            ax.hist(by_label[label], bins=bins, alpha=0.55, label=f"{label} ({len(by_label[label])})")
        if not run["scores_only"]:
            for cam, values in run["thresholds"].items():
                for t in values:
                    ax.axvline(t, color="black", linestyle="--", linewidth=1.2, label=f"threshold {cam} {t:.4g}")
        ax.set_title(f"{run['name']}: {run['configuration']}"[:90], fontsize=9)
        ax.set_xlabel("image score")
        ax.set_ylabel("frames")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(result: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """validation.json, report.md and scores.png in ``out_dir`` (created)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "validation.json", "markdown": out_dir / "report.md", "plot": out_dir / "scores.png"}
    write_json(result, paths["json"])
    paths["markdown"].write_text(format_markdown(result))
    plot_scores(result, paths["plot"])
    return paths


def write_json(result: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str, allow_nan=False) + "\n")
    return path
