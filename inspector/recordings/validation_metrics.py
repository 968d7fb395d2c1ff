"""Validation metrics: pure functions of the recording's frames and the verdicts (docs/recordings.md,
"Validation"). Part of `inspector validate`."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np

from inspector.core.stats import percentile
from inspector.judge.reasons import DECISIONS
from inspector.line import wire
from inspector.evaluation.metrics import image_auroc

from inspector.recordings.validation_run import RunOutcome
from inspector.recordings.validation_setup import ExpectedFrame, RunSpec

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# Metrics (pure)
# ------------------------------------------------------------------------------------------------


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def frame_record(frame: ExpectedFrame, verdict: wire.Verdict | None) -> dict[str, Any]:
    """One frame and its verdict (decision None = missing). ``latency_ms``: capture (as replayed)
    to the verdict's decided_ns."""
    record: dict[str, Any] = {"index": frame.index, "camera_id": frame.camera_id, "seq": frame.seq,
                              "part_id": frame.part_id, "label": frame.label, "source": frame.source,
                              "decision": None, "reason": None, "score": None, "threshold": None,
                              "defect_area_px": None, "latency_ms": None}
    if verdict is not None:
        record.update(decision=verdict.decision, reason=verdict.reason, score=verdict.score,
                      threshold=verdict.threshold, defect_area_px=verdict.defect_area_px,
                      latency_ms=(verdict.decided_ns - verdict.capture_ns) / 1e6)
    return record


def _counts(records: list[dict[str, Any]]) -> dict[str, int]:
    decisions = Counter(r["decision"] for r in records)
    return {"n": len(records), "ok": decisions["OK"], "reject": decisions["REJECT"], "fault": decisions["FAULT"],
            "missing": decisions[None]}


def _latency_p99(records: list[dict[str, Any]]) -> float | None:
    return percentile([r["latency_ms"] for r in records if r["latency_ms"] is not None], 99)


def _confusion_row(records: list[dict[str, Any]]) -> dict[str, int]:
    decisions = Counter(r["decision"] for r in records)
    return {"OK": decisions["OK"], "REJECT": decisions["REJECT"], "FAULT": decisions["FAULT"], "missing": decisions[None]}


def _score_stats(records: list[dict[str, Any]]) -> dict[str, float | None]:
    scores = [r["score"] for r in records if r["score"] is not None]
    if not scores:
        return {"score_min": None, "score_median": None, "score_max": None}
    return {"score_min": float(min(scores)), "score_median": float(np.median(scores)), "score_max": float(max(scores))}


def summarise(frames: list[ExpectedFrame], verdicts: dict[int, wire.Verdict], *, scores_only: bool = False) -> dict[str, Any]:
    """Metrics of one run. ``frames``: the recording's frames; ``verdicts``: frame index -> its
    verdict (absent = missing).

    Keys: n (frames), ok, reject, fault, missing (n = ok + reject + fault + missing); confusion
    {good|defect|unlabelled: {OK, REJECT, FAULT, missing}}; false_reject_rate = good frames not OK
    / good frames with a verdict; escape_rate = defect frames OK / defect frames with a verdict
    (None without such frames, or when ``scores_only``); image_auroc from the verdict scores of
    labelled frames (None with one class only; ``auroc_frames`` used, ``unscored`` labelled frames
    with a verdict but no score, excluded); latency_ms_p50 / p99 / max (capture -> decided);
    per_camera, per_label (counts and score statistics); reasons {reason or "ok": count};
    thresholds {camera: [distinct thresholds]}; frames (one record per frame)."""
    records = [frame_record(f, verdicts.get(f.index)) for f in frames]
    classes: dict[str, list[dict[str, Any]]] = {"good": [], "defect": [], "unlabelled": []}
    for frame, record in zip(frames, records):
        classes[frame.label_class].append(record)
    confusion = {name: _confusion_row(rs) for name, rs in classes.items() if rs or name != "unlabelled"}
    good, defect = confusion["good"], confusion["defect"]
    good_judged = sum(good[d] for d in DECISIONS)
    defect_judged = sum(defect[d] for d in DECISIONS)
    scored = [(frame.label_class == "defect", r["score"]) for frame, r in zip(frames, records)
              if frame.label_class != "unlabelled" and r["score"] is not None]
    unscored = sum(1 for frame, r in zip(frames, records)
                   if frame.label_class != "unlabelled" and r["decision"] is not None and r["score"] is None)
    auroc = image_auroc([s[0] for s in scored], [s[1] for s in scored]) if scored else None
    latencies = [r["latency_ms"] for r in records if r["latency_ms"] is not None]
    thresholds: dict[str, set[float]] = {}
    for r in records:
        if r["threshold"] is not None:
            thresholds.setdefault(r["camera_id"], set()).add(r["threshold"])
    by_camera: dict[str, list[dict[str, Any]]] = {}
    by_label: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_camera.setdefault(r["camera_id"], []).append(r)
        by_label.setdefault(r["label"] or "(none)", []).append(r)
    return {
        **_counts(records),
        "scores_only": scores_only,
        "false_reject_rate": None if scores_only else _rate(good_judged - good["OK"], good_judged),
        "escape_rate": None if scores_only else _rate(defect["OK"], defect_judged),
        "image_auroc": auroc,
        "auroc_frames": len(scored),
        "unscored": unscored,
        "latency_ms_p50": percentile(latencies, 50),
        "latency_ms_p99": percentile(latencies, 99),
        "latency_ms_max": max(latencies) if latencies else None,
        "confusion": confusion,
        "per_camera": {cam: {**_counts(rs), "latency_ms_p99": _latency_p99(rs)} for cam, rs in sorted(by_camera.items())},
        "per_label": {label: {**_counts(rs), **_score_stats(rs)} for label, rs in sorted(by_label.items())},
        "reasons": dict(sorted(Counter(r["reason"] or "ok" for r in records if r["decision"] is not None).items())),
        "thresholds": {cam: sorted(values) for cam, values in sorted(thresholds.items())},
        "frames": records,
    }


def run_result(frames: list[ExpectedFrame], outcome: RunOutcome, spec: RunSpec, name: str) -> dict[str, Any]:
    """:func:`summarise` plus what the run itself reported (replay, daemon summary, anomalies)."""
    return {
        "name": name,
        "configuration": spec.description,
        **summarise(frames, outcome.verdicts, scores_only=spec.scores_only),
        "sent": outcome.sent,
        "not_sent": None if outcome.sent is None else len(frames) - outcome.sent,
        "gap_verdicts": outcome.gap_verdicts,
        "unexpected_verdicts": outcome.unexpected_verdicts,
        "duplicate_verdicts": outcome.duplicate_verdicts,
        "timed_out": outcome.timed_out,
        "daemon_died": outcome.daemon_died,
        "replay_error": outcome.replay_error,
        "replay": outcome.replay,
        "daemon": outcome.daemon,
        "daemon_log": outcome.daemon_log,
    }


def changed_frames(result_a: dict[str, Any], result_b: dict[str, Any]) -> list[dict[str, Any]]:
    """Frames that have a verdict in both runs with different decisions, in recording order."""
    changed = []
    for a, b in zip(result_a["frames"], result_b["frames"]):
        if a["decision"] is None or b["decision"] is None or a["decision"] == b["decision"]:
            continue
        changed.append({
            "index": a["index"], "camera_id": a["camera_id"], "seq": a["seq"], "part_id": a["part_id"],
            "label": a["label"], "source": a["source"], "decision_a": a["decision"], "decision_b": b["decision"],
            "reason_a": a["reason"], "reason_b": b["reason"], "score_a": a["score"], "score_b": b["score"],
            "threshold_a": a["threshold"], "threshold_b": b["threshold"],
        })
    return changed
