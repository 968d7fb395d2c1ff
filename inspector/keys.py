"""`inspector keys`: make the keys of a line (docs/security.md).

    inspector keys curve NAME... --out DIR   CURVE key pairs for the links: DIR/NAME.key (public, give
                                             it to the peers) + DIR/NAME.key_secret (0600, only for NAME)
    inspector keys site NAME --out DIR       the site's Ed25519 signing key for engines and profiles:
                                             DIR/NAME.signing (0600, only where you export / calibrate)
                                             + DIR/NAME.pub (the trusted key every box lists in [trust])

Existing files are never overwritten. A typical box: ``inspector keys curve daemon cam0 cam1 gateway
--out keys`` and ``inspector keys site site --out keys``; the config then names ``keys/daemon.key``
(``[curve] server_key``), ``keys/cam0.key`` (``[cameras.cam0] grabber_key``), ``keys/gateway.key``
(``[gateways.NAME] key``) and ``keys/site.pub`` (``[trust] keys``).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from inspector.core.signing import SigningKey, make_site_key
from inspector.line.keys import make_pair, public_key

NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _name(text: str) -> str:
    if not NAME_RE.fullmatch(text) or text.startswith("."):
        raise argparse.ArgumentTypeError(f"{text!r}: a key name is 1..64 of A-Z a-z 0-9 _ . - (it names files)")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    curve = kinds.add_parser("curve", help="CURVE key pairs for grabbers, the daemon, gateways, recorders")
    curve.add_argument("names", nargs="+", type=_name, metavar="NAME")
    curve.add_argument("--out", required=True, type=Path, help="folder for NAME.key and NAME.key_secret")
    site = kinds.add_parser("site", help="the site's Ed25519 key that signs engines and calibration profiles")
    site.add_argument("name", type=_name, metavar="NAME")
    site.add_argument("--out", required=True, type=Path, help="folder for NAME.signing and NAME.pub")


def run(args: argparse.Namespace) -> int:
    if args.kind == "curve":
        for name in args.names:
            public, secret = make_pair(args.out, name)
            print(f"{public}  (public key {public_key(public).decode()})  +  {secret}  (secret, mode 0600)")
        return 0
    private, public = make_site_key(args.out, args.name)
    key = SigningKey.load(private)
    print(f"{private}  (signing key, mode 0600: export / calibrate --sign-key)  +  {public}  "
          f"(trusted key {key.key_id}: [trust] keys)")
    return 0
