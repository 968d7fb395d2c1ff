#!/usr/bin/env python3
"""Write a synthetic MVTec AD-layout defect data set (same as `inspector synth`).

Example: python tools/make_synthetic.py --out /tmp/synth --product part --size 128x256
"""

from __future__ import annotations

import argparse
import sys

from inspector.model import synthetic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    synthetic.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return synthetic.run(args)
    except (ValueError, OSError, RuntimeError) as exc:  # clear message, non-zero exit
        print(f"make_synthetic: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
