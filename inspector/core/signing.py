"""Ed25519 signatures on the artifacts a line trusts: engine manifests and calibration profiles.

Key files (``inspector keys site NAME --out DIR`` makes a pair, docs/security.md):

    NAME.signing   the private key, PEM PKCS#8, mode 0600: only where engines are exported and
                   profiles calibrated (``--sign-key FILE`` or ``$INSPECTOR_SIGNING_KEY``)
    NAME.pub       the public key, PEM SubjectPublicKeyInfo: on every box; a config's
                   ``[trust] keys`` names it (or a folder of ``*.pub`` files)

A signed artifact is a JSON object with a ``signature`` block::

    "signature": {"algorithm": "ed25519", "key_id": "<16 hex>", "signer": "NAME", "value": "<base64>"}

``value`` signs the artifact's canonical form: the object without ``signature`` as
``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)``, UTF-8.
Everything else in the object is covered, so a hash recomputed after an edit (an engine's
``engine_sha256``, a profile's thresholds or ``engine.sha256``) breaks the signature. ``key_id``
(the first 16 hex digits of the SHA-256 of the raw 32-byte public key) picks the key; ``signer``
is a name for people and is not trusted. :class:`TrustedKeys` verifies; every failure is a
:class:`SignatureError` that says what is wrong (unsigned, unknown key, altered).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .keyfiles import fresh_paths

ALGORITHM = "ed25519"
PRIVATE_SUFFIX, PUBLIC_SUFFIX = ".signing", ".pub"
SIGNING_KEY_ENV = "INSPECTOR_SIGNING_KEY"     # default --sign-key of export / calibrate
TRUSTED_KEYS_ENV = "INSPECTOR_TRUSTED_KEYS"   # default --trusted-keys of eval / validate (os.pathsep-separated)


class SignatureError(ValueError):
    """An artifact is unsigned, signed by a key that is not trusted, or altered after signing; or a
    key file is unusable."""


def canonical(document: dict[str, Any]) -> bytes:
    """The bytes a signature covers: ``document`` without its ``signature`` block, canonical JSON."""
    body = {key: value for key, value in document.items() if key != "signature"}
    try:
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                          allow_nan=False).encode("ascii")
    except (TypeError, ValueError) as exc:
        raise SignatureError(f"cannot sign or verify: not plain JSON ({exc})") from None


def digest(document: dict[str, Any]) -> str:
    """SHA-256 (hex) of :func:`canonical`: the identity of an artifact's content (audit logs)."""
    return hashlib.sha256(canonical(document)).hexdigest()


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class SigningKey:
    """A private site key, loaded from ``NAME.signing``."""

    private: Ed25519PrivateKey
    name: str

    @classmethod
    def load(cls, path: str | Path) -> "SigningKey":
        path = Path(path)
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise SignatureError(f"cannot use the signing key {path}: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SignatureError(f"{path} is not an Ed25519 private key")
        return cls(key, path.name.removesuffix(PRIVATE_SUFFIX))

    @property
    def key_id(self) -> str:
        return key_id(self.private.public_key())

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, document: dict[str, Any]) -> dict[str, Any]:
        """``document`` with a fresh ``signature`` block (any old one replaced)."""
        value = self.private.sign(canonical(document))
        body = {key: value for key, value in document.items() if key != "signature"}
        return {**body, "signature": {"algorithm": ALGORITHM, "key_id": self.key_id, "signer": self.name,
                                      "value": base64.b64encode(value).decode("ascii")}}


class TrustedKeys:
    """The public keys a line accepts artifacts from. ``TrustedKeys.load(paths)``: each path a
    ``.pub`` file or a folder whose ``*.pub`` files are all read. Raises SignatureError for an
    unusable file or when no key is found."""

    def __init__(self, keys: dict[str, Ed25519PublicKey], sources: dict[str, str]) -> None:
        self.keys = keys
        self.sources = sources   # key id -> the file it came from

    @classmethod
    def load(cls, paths: str | Path | list[str | Path] | tuple) -> "TrustedKeys":
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        keys: dict[str, Ed25519PublicKey] = {}
        sources: dict[str, str] = {}
        for path in map(Path, paths):
            files = sorted(path.glob(f"*{PUBLIC_SUFFIX}")) if path.is_dir() else [path]
            for file in files:
                public = _load_public(file)
                keys[key_id(public)] = public
                sources[key_id(public)] = str(file)
        if not keys:
            raise SignatureError(f"no trusted public key (*{PUBLIC_SUFFIX}) in {', '.join(map(str, paths)) or 'nothing'}")
        return cls(keys, sources)

    def with_key(self, public_pem: bytes) -> "TrustedKeys":
        """These keys and one more (PEM), e.g. a signer's own public key."""
        public = serialization.load_pem_public_key(public_pem)
        return TrustedKeys({**self.keys, key_id(public): public}, {**self.sources, key_id(public): "(own key)"})

    def verify(self, document: Any, what: str) -> str:
        """Check ``document``'s signature; returns the key id that signed it. Raises SignatureError
        naming ``what`` (e.g. the file) and the problem."""
        block = document.get("signature") if isinstance(document, dict) else None
        if not isinstance(block, dict):
            raise SignatureError(f"{what} is not signed (no 'signature' block): sign it with the site key "
                                 "(inspector export / calibrate --sign-key) or do not use it")
        if block.get("algorithm") != ALGORITHM or not isinstance(block.get("value"), str):
            raise SignatureError(f"{what}: signature block is not {ALGORITHM}")
        public = self.keys.get(str(block.get("key_id")))
        if public is None:
            raise SignatureError(f"{what} is signed by key {block.get('key_id')!r} ({block.get('signer')!r}), "
                                 f"which is not a trusted key")
        try:
            public.verify(base64.b64decode(block["value"], validate=True), canonical(document))
        except (InvalidSignature, ValueError):
            raise SignatureError(f"{what} was altered after it was signed (signature does not match its "
                                 "content): refusing it") from None
        return str(block["key_id"])


def _load_public(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise SignatureError(f"cannot use the trusted key {path}: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"{path} is not an Ed25519 public key")
    return key


def make_site_key(folder: str | Path, name: str) -> tuple[Path, Path]:
    """Write a new pair ``folder/NAME.signing`` (0600) + ``folder/NAME.pub``; refuses to overwrite.
    Returns (private path, public path)."""
    private_path, public_path = fresh_paths(folder, (f"{name}{PRIVATE_SUFFIX}", f"{name}{PUBLIC_SUFFIX}"),
                                            SignatureError)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public_path.write_bytes(SigningKey(key, name).public_pem())
    return private_path, public_path


def signing_key_from(path: str | Path | None, what: str) -> SigningKey:
    """The signing key at ``path``, else at ``$INSPECTOR_SIGNING_KEY``. Raises SignatureError saying
    how to make one when neither is set (``what``: the command, for the message)."""
    path = path or os.environ.get(SIGNING_KEY_ENV)
    if not path:
        raise SignatureError(f"{what} signs what it writes: pass --sign-key FILE (or set {SIGNING_KEY_ENV}); "
                             "make a site key with `inspector keys site NAME --out DIR` (docs/security.md)")
    return SigningKey.load(path)


def trust_paths(paths: list[str | Path] | None) -> list[str | Path]:
    """``paths``, else ``$INSPECTOR_TRUSTED_KEYS`` split on os.pathsep (maybe empty)."""
    return list(paths) if paths else [p for p in os.environ.get(TRUSTED_KEYS_ENV, "").split(os.pathsep) if p]


def trusted_keys_from(paths: list[str | Path] | None, what: str) -> TrustedKeys:
    """The trusted keys at ``paths``, else at ``$INSPECTOR_TRUSTED_KEYS`` (os.pathsep-separated).
    Raises SignatureError when neither is set: nothing is ever used unverified."""
    paths = trust_paths(paths)
    if not paths:
        raise SignatureError(f"{what} verifies engines and profiles: pass --trusted-keys PATH (or set "
                             f"{TRUSTED_KEYS_ENV}) naming the site's public key(s) (docs/security.md)")
    return TrustedKeys.load(paths)
