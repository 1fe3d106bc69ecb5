#!/usr/bin/env bash
# THE test command: set up, lint, type-check, run the test suite.
# Extra arguments are passed to pytest.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

lint_paths=()
for p in src tests bench; do
    if [ -e "$p" ]; then
        lint_paths+=("$p")
    fi
done

echo "test: ruff check ${lint_paths[*]}"
.venv/bin/ruff check "${lint_paths[@]}"

echo "test: mypy --strict src"
.venv/bin/mypy --strict src

echo "test: pytest -q $*"
rc=0
.venv/bin/pytest -q "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
    echo "test: FAILED: pytest collected no tests" >&2
    exit 1
fi
if [ "$rc" -ne 0 ]; then
    echo "test: FAILED: pytest exited with $rc" >&2
    exit "$rc"
fi
echo "test: all checks passed"
