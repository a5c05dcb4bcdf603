#!/usr/bin/env bash
# usage: ensure-debian-package.sh PATH PACKAGE
# Make sure PATH (an absolute path: a program or a data file) exists, installing Debian's
# PACKAGE when it is missing: `chromium` for the dashboard's browser test, `faketime` for the
# fault tests (a worker on a skewed clock), `wrk` for the service benchmark,
# `dataset-fashion-mnist` for the Fashion-MNIST data set.
# Idempotent and quiet: does nothing when it is there; otherwise installs non-interactively
# (as root, or through sudo when available).
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 PATH PACKAGE" >&2
    exit 2
fi
TARGET=$1
PACKAGE=$2
[[ -e "$TARGET" ]] && exit 0
me="ensure-debian-package ($PACKAGE)"

if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "$me: $TARGET is missing and I cannot become root to install it" >&2
    echo "$me: run as root: apt-get update && apt-get install -y $PACKAGE" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "$me: $TARGET is missing and apt-get is not available" >&2
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

if [[ ! -e "$TARGET" ]]; then
    echo "$me: installed the $PACKAGE package but $TARGET is still missing" >&2
    exit 1
fi
