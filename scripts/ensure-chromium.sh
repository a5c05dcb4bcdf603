#!/usr/bin/env bash
# Make sure Debian's headless-capable Chromium is at /usr/bin/chromium (the dashboard test drives it).
# Idempotent and quiet: does nothing when it is already installed; otherwise installs the
# `chromium` package non-interactively (as root, or through sudo when available).
set -euo pipefail

CHROMIUM=/usr/bin/chromium
[[ -x "$CHROMIUM" ]] && exit 0

if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "ensure-chromium: $CHROMIUM is missing and I cannot become root to install it" >&2
    echo "ensure-chromium: run as root: apt-get update && apt-get install -y chromium" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: $CHROMIUM is missing and apt-get is not available" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${SUDO[@]}" apt-get update -qq && \
       "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "ensure-chromium: installing the chromium package failed (output above)" >&2
    exit 1
fi

if [[ ! -x "$CHROMIUM" ]]; then
    echo "ensure-chromium: installed the chromium package but $CHROMIUM is still missing" >&2
    exit 1
fi
