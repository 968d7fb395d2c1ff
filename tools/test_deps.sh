#!/bin/sh
# System packages the test suite needs that pip cannot install: Mosquitto (the MQTT broker the
# plant tests start and stop, tests/plant/). Installed with apt-get when missing and when this runs
# as root (CI does); otherwise it says what to install, and those tests skip.
set -e
if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing mosquitto (MQTT broker for tests/plant) ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
    # the package's own broker service is not needed: the tests start theirs on free ports
    (command -v systemctl >/dev/null 2>&1 && systemctl disable --now mosquitto >/dev/null 2>&1) || true
else
    echo "mosquitto is missing: apt-get install mosquitto (tests/plant skip without it)" >&2
fi
