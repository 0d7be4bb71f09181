#!/usr/bin/env bash
# Run the test suite on a fresh clone: make .venv, install dul with its extras, install DCMTK
# (the interop peer) if it is missing, then run pytest. Arguments go to pytest.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1
# DCMTK tools read this: disable Nagle on their sockets (see DESIGN.md).
export TCP_NODELAY=1

# True when a DCMTK storescp is on PATH. pynetdicom installs console scripts of the same names
# (storescp, echoscu, ...), so the name alone proves nothing: ask each candidate for its version.
have_dcmtk() {
    local dir
    local IFS=:
    for dir in $PATH; do
        if [ -x "$dir/storescp" ] && "$dir/storescp" --version 2>/dev/null | grep -qi dcmtk; then
            return 0
        fi
    done
    return 1
}

if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    python3 -m venv .venv
fi

echo "== installing dul[test,docs,dev,examples,print] into .venv"
.venv/bin/python -m pip install --quiet -e '.[test,docs,dev,examples,print]'

if ! have_dcmtk; then
    echo "== DCMTK not found: installing it with apt-get"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y dcmtk
fi

echo "== pytest"
exec .venv/bin/python -m pytest "$@"
