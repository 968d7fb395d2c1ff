"""The supervisor of `inspector line` with real child processes: restart with backoff, done on
exit 0, one prefixed log stream, SIGTERM then kill."""

from __future__ import annotations

import io
import sys
import threading
import time

import pytest

from inspector.line.supervisor import ProcessSpec, Supervisor

pytestmark = pytest.mark.unit


def python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def ready_then(code: str) -> str:
    """Child code that first says READY=1 on its NOTIFY_SOCKET, as the daemon and gateways do."""
    return "from inspector.line.readiness import notify_ready; notify_ready(); " + code


def run_for(supervisor: Supervisor, seconds: float) -> dict:
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    try:
        return supervisor.run(stop)
    finally:
        timer.cancel()


def test_failures_restart_with_backoff_and_exit_0_is_done():
    stream = io.StringIO()
    specs = [ProcessSpec("flaky", "grabber", python("import sys; print('up', flush=True); sys.exit(3)")),
             ProcessSpec("once", "grabber", python("print('finished')")),
             ProcessSpec("daemon", "daemon", python(ready_then("import time; time.sleep(60)")))]
    result = run_for(Supervisor(specs, stream=stream, grace_s=2, backoff_initial_s=0.2, backoff_max_s=0.4), 2.5)
    text = stream.getvalue()
    assert result["once"] == {"restarts": 0, "exits": [0]} and "once exited 0: done, not restarted" in text
    assert 3 <= result["flaky"]["restarts"] <= 8 and set(result["flaky"]["exits"]) == {3}
    assert "restarting in 0.2 s (failure 1 in a row)" in text and "restarting in 0.4 s (failure 3 in a row)" in text
    assert "flaky  | up" in text and "once   | finished" in text     # one stream, prefixed by name


def test_stop_sigterms_in_order_then_kills_what_ignores_it():
    stream = io.StringIO()
    stubborn = python(ready_then("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                 "print('ready', flush=True); time.sleep(60)"))
    polite = python(ready_then("import signal, sys, time; "
                    "signal.signal(signal.SIGTERM, lambda *_: (print('bye', flush=True), sys.exit(0))); "
                    "print('ready', flush=True); time.sleep(60)"))
    specs = [ProcessSpec("gw", "gateway", polite), ProcessSpec("d", "daemon", stubborn), ProcessSpec("g", "grabber", polite)]
    started = time.monotonic()
    run_for(Supervisor(specs, stream=stream, grace_s=1.0), 1.5)
    assert time.monotonic() - started < 10
    text = stream.getvalue()
    assert "d stopped (status -9)" in text                           # ignored SIGTERM: killed after the grace
    assert "g stopped (status 0)" in text and "gw stopped (status 0)" in text
    assert text.index("g stopped") < text.index("d stopped") < text.index("gw stopped")   # grabbers, daemon, gateways


def test_grabbers_start_only_when_the_daemon_and_gateways_are_ready(tmp_path):
    """The grabber is started after both READY=1 (the gateway's comes 1 s late); a gateway that
    never says it is ready holds the grabbers back for ready_timeout_s, then they start anyway."""
    stamp = tmp_path / "stamps"
    stamp.mkdir()
    note = "import pathlib, time; pathlib.Path({!r}).write_text(repr(time.time())); "
    late_gateway = python(note.format(str(stamp / "gateway")) + "time.sleep(1.0); "
                          + ready_then("time.sleep(60)"))
    daemon = python(ready_then("import time; time.sleep(60)"))
    grabber = python(note.format(str(stamp / "grabber")) + "time.sleep(60)")
    stream = io.StringIO()
    run_for(Supervisor([ProcessSpec("gw", "gateway", late_gateway), ProcessSpec("d", "daemon", daemon),
                        ProcessSpec("g", "grabber", grabber)], stream=stream, grace_s=1.0), 4.0)
    started = {name: float((stamp / name).read_text()) for name in ("gateway", "grabber")}
    assert started["grabber"] - started["gateway"] >= 1.0, started
    assert "daemon and gateways ready: starting the grabbers" in stream.getvalue()

    (stamp / "grabber").unlink()
    stream = io.StringIO()
    silent_gateway = python("import time; time.sleep(60)")
    run_for(Supervisor([ProcessSpec("gw", "gateway", silent_gateway), ProcessSpec("d", "daemon", daemon),
                        ProcessSpec("g", "grabber", grabber)], stream=stream, grace_s=1.0, ready_timeout_s=1.0), 3.5)
    assert (stamp / "grabber").exists()
    assert "not ready after 1 s: gw; starting the grabbers anyway" in stream.getvalue()
