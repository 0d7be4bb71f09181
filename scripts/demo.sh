#!/usr/bin/env bash
# Decode a captured DICOM association (echoscu -> storescp) with dul's command-line tool.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1

if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    python3 -m venv .venv
fi

echo "== installing dul[examples] into .venv"
.venv/bin/python -m pip install --quiet -e '.[examples]'

echo "== python -m dul decode examples/captures/echoscu-storescp.bin"
exec .venv/bin/python -m dul decode examples/captures/echoscu-storescp.bin
