"""What every part of tools/gpu_check.py shares: the repository on sys.path, tolerances and sizes, the
report table, optional imports, and the OpenCV stub for machines without it."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

KERNEL_RTOL = 1e-4      # float32 vs float64 reference, relative to the map's max
SIZES_WH = [(64, 64), (256, 256), (768, 320), (320, 768)]
BATCHES = [1, 2, 5, 8]


class Report:
    """Rows of (section, item, status, detail); status OK / SKIP / FAIL / INFO."""

    def __init__(self):
        self.rows: list[tuple[str, str, str, str]] = []
        self.data: dict = {}

    def add(self, section: str, item: str, status: str, detail: str = "") -> None:
        self.rows.append((section, item, status, detail))
        print(f"[{status:4}] {section}: {item} {detail}", flush=True)

    def failed(self) -> bool:
        return any(r[2] == "FAIL" for r in self.rows)

    def table(self) -> str:
        w = [max(len(r[i]) for r in self.rows + [("section", "item", "status", "")]) for i in range(3)]
        lines = [f"{'section':<{w[0]}}  {'item':<{w[1]}}  {'status':<{w[2]}}  detail", "-" * (sum(w) + 16)]
        lines += [f"{s:<{w[0]}}  {i:<{w[1]}}  {st:<{w[2]}}  {d}" for s, i, st, d in self.rows]
        return "\n".join(lines)


def try_import(name: str):
    """(module, "") or (None, "<error type>: <message>"); never raises."""
    try:
        return importlib.import_module(name), ""
    except Exception as exc:  # ImportError, or a broken install raising anything else
        return None, f"{type(exc).__name__}: {exc}"


def ensure_cv2_importable(report: Report) -> str | None:
    """inspector.engine imports inspector.core.preprocess, which imports cv2 at module level. When OpenCV is
    missing here, put a stub on the path (nothing in these checks resizes images) and say so."""
    if importlib.util.find_spec("cv2") is not None:
        return None
    stub_dir = tempfile.mkdtemp(prefix="gpu_check_cv2_")
    Path(stub_dir, "cv2.py").write_text(
        "def __getattr__(name):\n    raise ImportError('OpenCV is not installed (gpu_check stub)')\n")
    sys.path.insert(0, stub_dir)
    report.add("env", "cv2", "INFO", "missing: stub module used (no resizing happens in these checks)")
    return stub_dir
