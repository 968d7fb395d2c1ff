"""Command-line entry point: `inspector <command> ...`.

Each command lives in its own module, which defines ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their command runs, so that, e.g.,
`inspector serve` never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# numpy's BLAS is only used for small matmuls (the anomaly-map head); its threads would fight the
# engine's for the cores (measured: map head 0.3 ms/image single-threaded, 1-130 ms contended).
# Set before numpy is first imported; an explicit environment setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("inspector.model.train", "train a Reverse Distillation model on good parts"),
    "eval": ("inspector.evaluation.evaluate", "evaluate a model on an MVTec AD-layout test set"),
    "score": ("inspector.evaluation.score", "score images and write heatmap overlays"),
    "export": ("inspector.engine.export", "export a trained model to an ONNX engine + manifest"),
    "bench": ("inspector.evaluation.bench", "benchmark engines: images/s and latency"),
    "calibrate": ("inspector.calibration.calibrate", "set thresholds from good parts"),
    "grab": ("inspector.line.grabber", "run one camera grabber: source -> ZeroMQ PUSH"),
    "serve": ("inspector.line.serve", "run the inspector daemon"),
    "gateway": ("inspector.plc.gateway", "drive a PLC (Modbus TCP) from the daemon's verdicts"),
    "plc-sim": ("inspector.plc.plc_sim", "run a simulated Modbus TCP PLC"),
    "mqtt": ("inspector.plant.mqtt_gateway", "publish verdicts, counts and health to an MQTT broker"),
    "opcua": ("inspector.plant.opcua_server", "serve counters, verdicts, health and calibration over OPC UA"),
    "fleet": ("inspector.plant.fleet", "every box and camera of a line, read from the MQTT broker"),
    "record": ("inspector.recordings.record", "record a frame stream (or an MVTec folder) to an MCAP file"),
    "replay": ("inspector.recordings.replay", "push a recording to a daemon as the original cameras"),
    "validate": ("inspector.recordings.validate", "run a labelled recording through the daemon path and report"),
    "line": ("inspector.app", "run a whole box from one config: daemon, gateways, grabbers (supervised)"),
    "demo": ("inspector.demo", "run the whole line locally with embedded defaults"),
    "archive": ("inspector.station.archiver", "keep every REJECT/FAULT frame (and sampled OKs) with map and overlay"),
    "ui": ("inspector.station.ui", "serve the live operator page (counts, rejects, calibration; operator login)"),
    "synth": ("inspector.model.synthetic", "write a synthetic MVTec AD-layout defect data set"),
    "keys": ("inspector.keys", "make CURVE key pairs for the links and the site key that signs artifacts"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inspector", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:  # import only the module of the command that runs
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # clear message, non-zero exit; tracebacks with -v
        if args.verbose:
            raise
        print(f"inspector {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
