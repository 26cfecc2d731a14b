#!/usr/bin/env bash
# Sets up, builds and runs every test: the dev build, then the same suite under ASan + UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
for preset in dev asan-ubsan; do
  echo "=== $preset ==="
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
  ctest --preset "$preset" --timeout 900
done
echo "all tests passed (dev and asan-ubsan)"
