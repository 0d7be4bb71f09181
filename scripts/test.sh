#!/usr/bin/env bash
# Run the test suite on a fresh clone: make .venv, install dul with its extras, install DCMTK and
# Orthanc (the interop peers) if they are missing, then run pytest. Arguments go to pytest.
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

# bench: the test suite draws the benchmark curves once (tests/test_benchmarks_smoke.py).
echo "== installing dul[test,docs,dev,examples,print,bench] into .venv"
.venv/bin/python -m pip install --quiet -e '.[test,docs,dev,examples,print,bench]'

# True when Orthanc's server is installed (Debian puts it in /usr/sbin, off a user's PATH).
have_orthanc() {
    command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ]
}

missing=()
have_dcmtk || missing+=(dcmtk)
have_orthanc || missing+=(orthanc)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "== not found: ${missing[*]}: installing with apt-get"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    $sudo apt-get update
    # The tests start their own Orthanc on free ports (tests/orthanc.py), whatever the package
    # may have started as a service.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${missing[@]}"
fi

echo "== pytest"
exec .venv/bin/python -m pytest "$@"
