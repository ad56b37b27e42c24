#!/bin/sh
# tests/deps.sh -- installs what llmux needs to build, run and test on Debian 12
# (run as root). Idempotent: skips apt-get when everything is already there.
# Also makes .venv/ with the official openai client for the integration tests.
set -eu
cd "$(dirname "$0")/.."

PKGS="build-essential autoconf automake libtool pkg-config make
      libevent-dev libjansson-dev libssl-dev libhiredis-dev libutf8proc-dev node-llhttp
      python3 python3-venv curl nginx-light wrk redis-server groff-base
      libsndfile1-dev libsoxr-dev sox libsox-fmt-mp3"
missing=""
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# The openai client for the integration tests; tests that need it skip
# (and say so) if this fails, e.g. without access to PyPI.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import openai' 2>/dev/null; then
    python3 -m venv .venv 2>/dev/null || /usr/bin/python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check openai || \
        echo "deps: could not install the openai client; its tests will be skipped"
fi
