#!/usr/bin/env bash
# The whole test suite, as CI runs it (through `make test`). Starts what the tests need; they stop it.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p test-artifacts
python -m pytest -q -p no:cacheprovider "$@"
status=$?
if [ $status -eq 5 ]; then echo "no tests collected" >&2; exit 1; fi
exit $status
