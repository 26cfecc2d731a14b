#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Sets up, builds and runs every test: the format check, the dev build, then the same suite under
# ASan + UBSan; then the unit and library tests under ThreadSanitizer, a short run of each libFuzzer
# target over its committed corpus (tests/fuzz/README.md), and the Debian packages.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "=== format ==="
# Every C++ file as clang-format (.clang-format) writes it; a diff fails the run.
git ls-files '*.cpp' '*.hpp' | xargs clang-format --dry-run --Werror
for preset in dev asan-ubsan; do
  echo "=== $preset ==="
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
  # Some tests run once each, to keep CI under 40 minutes: the chaos suite (tests/chaos, ~75 s),
  # the demo, the benchmark smoke tests (~95 s under ASan) and the black-box files labelled `slow`
  # (timing, not memory: ~4.5 min under ASan) in the dev build; the smuggling suite (tests/smuggling, hostile
  # HTTP, ~30 s) under ASan/UBSan.
  skip=(-LE smuggling)
  if [[ $preset == asan-ubsan ]]; then skip=(-LE '^(chaos|slow)$' -E '^(demo|bench_.*_smoke)$'); fi
  ctest --preset "$preset" --timeout 900 "${skip[@]}"
done
echo "=== tsan ==="
cmake --preset tsan >/dev/null
cmake --build --preset tsan  # the unit and integration test binaries only
ctest --preset tsan --timeout 900
echo "=== fuzz ==="
scripts/fuzz.sh 10  # clang, build/fuzz, only the fuzz targets; 10 s each over their corpus
echo "=== packages ==="
# Last: it installs the packages on this machine (the broker's unit is enabled). Builds them from a
# copy of the tree, lints them, installs them, verifies the units, builds a downstream program
# against them and sends a request through the installed broker.
scripts/package.sh
echo "all tests passed (format, dev, asan-ubsan, tsan, fuzz, packages)"
