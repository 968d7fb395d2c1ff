"""The one build of a sample line's model: synth -> train -> export -> calibrate, cached.

``inspector demo`` and ``tools/bench_line.py`` need the same thing: a labelled synthetic data set,
a model trained on it, its ONNX engine and a calibration profile made on good parts the model never
saw. :func:`build` makes whatever is missing or stale (a model whose tensors cannot be verified is
retrained; an engine whose manifest names another model, or is not signed by the build's key, is
re-exported, and its profile re-made) and returns the paths. Steps run as ``inspector`` commands
(the same ones a person would type); a failed step raises :class:`BuildError` with its output.

Signing (docs/security.md): a sample line gets a site key of its own, made once in
``Layout.keys`` (``site.signing`` + ``site.pub``, as ``inspector keys site site`` would): export
and calibrate sign with it, and the line's ``[trust]`` lists ``site.pub``. Nothing here skips a
verification; a production site keeps its signing key off the line's machines instead.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


class BuildError(RuntimeError):
    """A build step failed; the message holds the end of its output."""


@dataclass(frozen=True)
class Recipe:
    """What to build. Data: ``generate_dataset`` (MVTec layout, colour) of ``product`` at
    ``size`` px, train/test counts and seed; calibration parts: ``n_calib_good`` good parts with
    ``calib_seed``; model: ``epochs`` at ``size``; profile: ``target_frr``."""

    product: str = "part"
    size: int = 160
    n_train: int = 150
    n_test_good: int = 40
    n_defect: int = 10
    seed: int = 7
    n_calib_good: int = 80
    calib_seed: int = 8
    epochs: int = 60
    target_frr: float = 0.01


@dataclass(frozen=True)
class Layout:
    """Where the build's files go."""

    data: Path
    calib: Path
    model: Path
    engine: Path
    profile: Path
    keys: Path        # the build's site key: keys/site.signing + keys/site.pub


def ensure_site_key(folder: Path, say: Callable[[str], None] = print) -> tuple[Path, Path]:
    """``folder/site.signing`` + ``folder/site.pub``, made when missing."""
    from inspector.core.signing import PRIVATE_SUFFIX, PUBLIC_SUFFIX, make_site_key

    private, public = folder / f"site{PRIVATE_SUFFIX}", folder / f"site{PUBLIC_SUFFIX}"
    if not (private.is_file() and public.is_file()):
        say(f"making a site signing key for this sample line in {folder}")
        private.unlink(missing_ok=True)
        public.unlink(missing_ok=True)
        make_site_key(folder, "site")
    return private, public


def run_step(*args: str, cwd: str | Path | None = None) -> None:
    """Run ``inspector ARGS`` to completion; BuildError with its output when it fails."""
    proc = subprocess.run([sys.executable, "-m", "inspector.cli", *args], capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise BuildError(f"inspector {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def use_site_key(folder: Path, say: Callable[[str], None] = print) -> None:
    """For tools that run ``export`` / ``calibrate`` / ``eval`` as commands: with no site key in the
    environment (``$INSPECTOR_SIGNING_KEY``), make one in ``folder`` (once, :func:`ensure_site_key`)
    and put it in this process's environment (the signing key, and its public key among the
    trusted ones), which the commands inherit."""
    import os

    from inspector.core.signing import SIGNING_KEY_ENV, TRUSTED_KEYS_ENV

    if os.environ.get(SIGNING_KEY_ENV):
        return
    signing, public = ensure_site_key(Path(folder).resolve(), say)
    os.environ[SIGNING_KEY_ENV] = str(signing)
    os.environ[TRUSTED_KEYS_ENV] = os.pathsep.join(filter(None, [os.environ.get(TRUSTED_KEYS_ENV), str(public)]))


def engine_matches(engine: Path, model: Path, public: Path) -> bool:
    """The engine exists, was exported from this very model (manifest ``model_sha256``) and is
    signed by the key ``public``."""
    from inspector.core.signing import SignatureError, TrustedKeys
    from inspector.engine.manifest import ManifestError, read_manifest, sha256_file

    try:
        return read_manifest(engine, trusted=TrustedKeys.load(public))["model_sha256"] == sha256_file(model)
    except (ManifestError, SignatureError, KeyError, OSError):
        return False


def model_verifies(model: Path) -> bool:
    """The checkpoint exists and its tensors match their recorded hash (older ones have none)."""
    from inspector.model.checkpoint import CheckpointError, load_checkpoint

    try:
        load_checkpoint(model)
        return True
    except CheckpointError:
        return False


def profile_verifies(profile: Path, public: Path) -> bool:
    from inspector.core.signing import TrustedKeys
    from inspector.judge.profile import ProfileError, load_profile

    try:
        load_profile(profile, TrustedKeys.load(public))
        return True
    except ProfileError:
        return False


def _data(recipe: Recipe, out: Path, *, n_train: int, n_good: int, n_defect: int, seed: int) -> None:
    from inspector.model.synthetic import generate_dataset

    generate_dataset(out, product=recipe.product, n_train=n_train, n_test_good=n_good, n_test_defect_per_kind=n_defect,
                     size=(recipe.size, recipe.size), color=True, seed=seed, overwrite=True)


def ensure_data(recipe: Recipe, out: Path, *, rebuild: bool = False, say: Callable[[str], None] = print) -> Path:
    """The labelled sample data set in ``out`` (made when missing or with ``rebuild``)."""
    if rebuild or not (out / "test").is_dir():
        say(f"generating labelled sample data ({recipe.size}x{recipe.size}) in {out}")
        _data(recipe, out, n_train=recipe.n_train, n_good=recipe.n_test_good, n_defect=recipe.n_defect,
              seed=recipe.seed)
    return out


def build(recipe: Recipe, layout: Layout, *, rebuild: bool = False, generate_data: bool = True,
          say: Callable[[str], None] = print) -> dict[str, Path]:
    """Make what is missing (everything with ``rebuild``); returns data, model, engine, profile.
    ``generate_data=False``: ``layout.data`` is the caller's own data set (never written)."""
    if rebuild:
        for path in (layout.model, layout.engine, layout.engine.with_suffix(".json"), layout.profile):
            path.unlink(missing_ok=True)
    signing, public = ensure_site_key(layout.keys, say)
    if generate_data:
        ensure_data(recipe, layout.data, rebuild=rebuild, say=say)
    if rebuild or not (layout.calib / "test" / "good").is_dir():   # good parts the model never saw
        _data(recipe, layout.calib, n_train=1, n_good=recipe.n_calib_good, n_defect=1, seed=recipe.calib_seed)
    if layout.model.is_file() and not model_verifies(layout.model):
        say(f"{layout.model} cannot be verified (made before checkpoints carried a tensor hash?): training again")
        layout.model.unlink()
    if not layout.model.is_file():
        say(f"training a quick model ({recipe.epochs} epochs, {recipe.size}px) -> {layout.model}")
        started = time.time()
        run_step("train", "--data", str(layout.data), "--out", str(layout.model), "--epochs", str(recipe.epochs),
                 "--image-size", str(recipe.size), "--no-progress")
        say(f"trained in {time.time() - started:.0f} s")
    if not engine_matches(layout.engine, layout.model, public):
        say(f"exporting the ONNX engine -> {layout.engine} (signed)")
        run_step("export", "--model", str(layout.model), "--out", str(layout.engine), "--sign-key", str(signing))
        layout.profile.unlink(missing_ok=True)
    if not profile_verifies(layout.profile, public):
        good = layout.calib / "test" / "good"
        say(f"calibrating on {good} (target FRR {recipe.target_frr}) -> {layout.profile}")
        run_step("calibrate", "--engine", str(layout.engine), "--good", str(good), "--target-frr",
                 str(recipe.target_frr), "--out", str(layout.profile), "--sign-key", str(signing))
    return {"data": layout.data, "model": layout.model, "engine": layout.engine, "profile": layout.profile,
            "trusted_key": public}
