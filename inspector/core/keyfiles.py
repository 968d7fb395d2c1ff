"""Where new key files go (CURVE pairs, the site's signing key): a key is never overwritten."""

from __future__ import annotations

from pathlib import Path


def fresh_paths(folder: str | Path, names: tuple[str, ...] | list[str], error: type[Exception]) -> list[Path]:
    """``folder/NAME`` for each of ``names``, the folder made if needed. Raises ``error`` naming the
    first that exists already (delete it first to replace a key)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in names]
    for path in paths:
        if path.exists():
            raise error(f"{path} exists; not overwriting a key (delete it first to replace it)")
    return paths
