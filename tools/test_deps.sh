#!/bin/sh
# System packages the test suite needs that pip cannot install, the one place `make test` gets them:
#   mosquitto                  the MQTT broker the plant tests start and stop (tests/plant/)
#   chromium, chromium-driver  the headless browser of the operator-page tests (tests/e2e/test_station.py)
# Installed with apt-get when missing and when this runs as root (CI does); otherwise it says what to
# install, and those tests skip with the reason.
set -e
missing=""
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    missing="$missing mosquitto"
fi
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    missing="$missing chromium chromium-driver"
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing$missing for the tests ..."
    if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing) \
            >/tmp/inspector-test-deps.log 2>&1; then
        # mosquitto's own broker service is not needed: the tests start theirs on free ports
        (command -v systemctl >/dev/null 2>&1 && systemctl disable --now mosquitto >/dev/null 2>&1) || true
    else
        echo "warning: could not install$missing (see /tmp/inspector-test-deps.log); their tests will be skipped" >&2
    fi
else
    echo "missing:$missing (apt-get install$missing as root); their tests will be skipped" >&2
fi
