#!/usr/bin/env bash
# Headless Chromium and chromedriver for the on-call UI test (tests/ui), from Debian's packages.
# Idempotent and quiet when both are present; installs them otherwise (needs root, as CI has).
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-chromium: /usr/bin/chromium or /usr/bin/chromedriver is missing and this is not root;" >&2
    echo "  install them with: sudo apt-get install -y chromium chromium-driver" >&2
    exit 1
fi

echo "ensure-chromium: installing chromium and chromium-driver (Debian packages)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
/usr/bin/chromium --version
/usr/bin/chromedriver --version
