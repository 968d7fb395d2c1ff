#!/bin/sh
# Installs Debian's chromium and chromium-driver for the browser tests (tests/e2e/test_station_browser.py)
# when they are missing and this runs as root with apt-get (CI: a clean Debian machine as root).
# Never fails the build: without them the browser tests are skipped, and say why.
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium + chromium-driver for the browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
        >/tmp/inspector-chromium-install.log 2>&1 \
        || echo "warning: chromium could not be installed (see /tmp/inspector-chromium-install.log); browser tests will be skipped"
else
    echo "warning: chromium/chromedriver missing and not root with apt-get; browser tests will be skipped"
fi
exit 0
