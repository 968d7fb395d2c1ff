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
             ProcessSpec("daemon", "daemon", python("import time; time.sleep(60)"))]
    result = run_for(Supervisor(specs, stream=stream, grace_s=2, backoff_initial_s=0.2, backoff_max_s=0.4), 2.5)
    text = stream.getvalue()
    assert result["once"] == {"restarts": 0, "exits": [0]} and "once exited 0: done, not restarted" in text
    assert 3 <= result["flaky"]["restarts"] <= 8 and set(result["flaky"]["exits"]) == {3}
    assert "restarting in 0.2 s (failure 1 in a row)" in text and "restarting in 0.4 s (failure 3 in a row)" in text
    assert "flaky  | up" in text and "once   | finished" in text     # one stream, prefixed by name


def test_stop_sigterms_in_order_then_kills_what_ignores_it():
    stream = io.StringIO()
    stubborn = python("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                      "print('ready', flush=True); time.sleep(60)")
    polite = python("import signal, sys, time; "
                    "signal.signal(signal.SIGTERM, lambda *_: (print('bye', flush=True), sys.exit(0))); "
                    "print('ready', flush=True); time.sleep(60)")
    specs = [ProcessSpec("gw", "gateway", polite), ProcessSpec("d", "daemon", stubborn), ProcessSpec("g", "grabber", polite)]
    started = time.monotonic()
    run_for(Supervisor(specs, stream=stream, grace_s=1.0), 1.5)
    assert time.monotonic() - started < 10
    text = stream.getvalue()
    assert "d stopped (status -9)" in text                           # ignored SIGTERM: killed after the grace
    assert "g stopped (status 0)" in text and "gw stopped (status 0)" in text
    assert text.index("g stopped") < text.index("d stopped") < text.index("gw stopped")   # grabbers, daemon, gateways
