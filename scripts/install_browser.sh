#!/usr/bin/env bash
# Install Debian's Chromium for the settings page's browser tests, when it is missing and this
# machine can (root with apt-get, as on the dev and CI machines). Otherwise say why and go on:
# the browser tests then skip with that reason.
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: no Chromium and no root apt-get here; the browser tests will skip" >&2
    exit 0
fi
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
    >/tmp/install_browser.log 2>&1; then
    echo "note: installing Chromium failed (see /tmp/install_browser.log); the browser tests will skip" >&2
fi
exit 0
