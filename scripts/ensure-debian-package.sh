#!/usr/bin/env bash
# usage: ensure-debian-package.sh PROGRAM PACKAGE
# Make sure PROGRAM (an absolute path) exists, installing Debian's PACKAGE when it is missing:
# `chromium` for the dashboard's browser test, `faketime` for the fault tests (a worker on a
# skewed clock), `wrk` for the service benchmark.
# Idempotent and quiet: does nothing when it is there; otherwise installs non-interactively
# (as root, or through sudo when available).
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 PROGRAM PACKAGE" >&2
    exit 2
fi
PROGRAM=$1
PACKAGE=$2
[[ -x "$PROGRAM" ]] && exit 0
me="ensure-debian-package ($PACKAGE)"

if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "$me: $PROGRAM is missing and I cannot become root to install it" >&2
    echo "$me: run as root: apt-get update && apt-get install -y $PACKAGE" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "$me: $PROGRAM is missing and apt-get is not available" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${SUDO[@]}" apt-get update -qq && \
       "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$PACKAGE"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "$me: installing the $PACKAGE package failed (output above)" >&2
    exit 1
fi

if [[ ! -x "$PROGRAM" ]]; then
    echo "$me: installed the $PACKAGE package but $PROGRAM is still missing" >&2
    exit 1
fi
