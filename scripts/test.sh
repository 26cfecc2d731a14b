#!/usr/bin/env bash
# Sets up, builds and runs every test: the dev build, then the same suite under ASan + UBSan; then
# the unit and library tests under ThreadSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
for preset in dev asan-ubsan; do
  echo "=== $preset ==="
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
  ctest --preset "$preset" --timeout 900
done
echo "=== tsan ==="
cmake --preset tsan >/dev/null
cmake --build --preset tsan  # the unit and integration test binaries only
ctest --preset tsan --timeout 900
echo "all tests passed (dev, asan-ubsan, tsan)"
