"""`inspector line --systemd DIR`: the production units for a box, one per process plus a target.

Each unit runs exactly the command line the supervisor of ``inspector line`` runs
(:class:`inspector.line.supervisor.ProcessSpec`), with ``Restart=on-failure``. The daemon is
``Type=notify`` (it sends READY / STOPPING and pets the watchdog, ``WatchdogSec``); gateways are
``Type=notify`` too (READY once the daemon's heartbeats reach them) and start after the daemon;
grabbers start after the daemon and every gateway, so that no verdict is published before a gateway
listens (the same order ``inspector line`` keeps, :mod:`inspector.line.readiness`). ``inspector-line.target`` groups them: ``systemctl start
inspector-line.target`` starts the box, ``systemctl stop`` stops every unit (systemd sends
SIGTERM, then SIGKILL after ``TimeoutStopSec``).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from inspector.line.supervisor import ProcessSpec

TARGET = "inspector-line.target"
WATCHDOG_S = 5
DAEMON_START_TIMEOUT_S = 120   # engine load + warm-up before READY=1
GATEWAY_START_TIMEOUT_S = 180  # READY=1 when the daemon's heartbeats arrive: after the daemon's start
STOP_TIMEOUT_S = 30


def unit_name(spec: ProcessSpec) -> str:
    """``inspector-NAME.service``, NAME escaped like ``systemd-escape`` (``\\xNN`` for anything
    outside ``A-Z a-z 0-9 : _ .``; ``-`` is kept, it separates the words)."""
    escaped = re.sub(r"[^A-Za-z0-9:_.\-]", lambda m: "".join(f"\\x{b:02x}" for b in m.group().encode()), spec.name)
    return f"inspector-{escaped}.service"


def _exec_start(argv: tuple[str, ...]) -> str:
    return " ".join(shlex.quote(a) for a in argv).replace("%", "%%")


def unit_text(spec: ProcessSpec, after_units: list[str], working_dir: Path) -> str:
    """The unit file for one process, started after ``after_units``."""
    after = " ".join(["network-online.target", *after_units])
    service = [f"Type={'notify' if spec.role in ('daemon', 'gateway', 'station') else 'simple'}"]
    if spec.role == "daemon":
        service += ["NotifyAccess=main", f"WatchdogSec={WATCHDOG_S}", f"TimeoutStartSec={DAEMON_START_TIMEOUT_S}",
                    "ExecReload=/bin/kill -HUP $MAINPID"]
    if spec.role in ("gateway", "station"):
        service += ["NotifyAccess=main", f"TimeoutStartSec={GATEWAY_START_TIMEOUT_S}"]
    service += [
        f"ExecStart={_exec_start(spec.argv)}",
        f"WorkingDirectory={working_dir}",
        "Environment=PYTHONUNBUFFERED=1",
        "Restart=on-failure",
        "RestartSec=1",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={STOP_TIMEOUT_S}",
    ]
    return "\n".join([
        "[Unit]",
        f"Description=inspector {spec.role} {spec.name}",
        f"PartOf={TARGET}",
        "Wants=network-online.target",
        f"After={after}",
        "",
        "[Service]",
        *service,
        "",
        "[Install]",
        f"WantedBy={TARGET}",
        "",
    ])


def target_text(units: list[str]) -> str:
    return "\n".join([
        "[Unit]",
        "Description=inspector line: every process of the box config",
        f"Wants={' '.join(units)}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def write_units(specs: list[ProcessSpec], out_dir: str | Path, *, working_dir: str | Path) -> list[Path]:
    """Write one ``.service`` per spec and the target into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    daemons = [unit_name(s) for s in specs if s.role == "daemon"]
    gateways = [unit_name(s) for s in specs if s.role == "gateway"]
    stations = [unit_name(s) for s in specs if s.role == "station"]
    after = {"daemon": [], "gateway": daemons, "station": daemons, "grabber": [*daemons, *gateways, *stations]}
    written = []
    for spec in specs:
        path = out / unit_name(spec)
        path.write_text(unit_text(spec, after[spec.role], Path(working_dir).resolve()), encoding="utf-8")
        written.append(path)
    target = out / TARGET
    target.write_text(target_text([p.name for p in written]), encoding="utf-8")
    return [*written, target]
