#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Sets up, builds and runs every test: the format check, the dev build, then the same suite under
# ASan + UBSan; then the unit and library tests under ThreadSanitizer, a short run of each libFuzzer
# target over its committed corpus (tests/fuzz/README.md), and the Debian packages.
#
# The dev build comes first, at full speed. The other builds (ASan/UBSan, TSan, the fuzz targets,
# the packages) then run in the background at the lowest CPU and I/O priority while the dev tests
# run: those tests mostly wait on sockets and timers, so the compilers take the idle cores and the
# tests keep the CPU whenever they want it. Logs of the background builds: build/background.log.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "=== format ==="
# Every C++ file as clang-format (.clang-format) writes it; a diff fails the run.
git ls-files '*.cpp' '*.hpp' | xargs clang-format --dry-run --Werror

echo "=== dev: build ==="
cmake --preset dev >/dev/null
cmake --build --preset dev

mkdir -p build
rm -f build/.asan-ubsan-built
background() {
  renice -n 19 -p "$BASHPID" >/dev/null  # what it starts inherits both
  ionice -c 3 -p "$BASHPID" 2>/dev/null || true
  cmake --preset asan-ubsan >/dev/null
  cmake --build --preset asan-ubsan
  touch build/.asan-ubsan-built
  cmake --preset tsan >/dev/null
  cmake --build --preset tsan  # the unit and integration test binaries only
  scripts/fuzz.sh --build-only  # clang, build/fuzz, only the fuzz targets
  scripts/package.sh --build-only  # in a copy of the tree; results in build/packages/
}
set -m  # the background builds get a process group of their own, so a failure here stops them all
(background) >build/background.log 2>&1 &
bg=$!
set +m
trap 'kill -- -$bg 2>/dev/null || true' EXIT
background_failed() {
  tail -n 80 build/background.log
  echo "test.sh: a background build failed (whole log: build/background.log)" >&2
  exit 1
}

# Some tests run once each, to keep CI under 40 minutes: the chaos suite (tests/chaos, ~75 s, and
# chaos_batches, the same with batches, ~55 s),
# the demo, the benchmark smoke tests (~95 s under ASan), the Python library's suite (python/,
# ~30 s) and the black-box files labelled `slow` (timing, not memory: ~4.5 min under ASan) in the
# dev build; the smuggling suite (tests/smuggling, hostile HTTP, ~30 s) under ASan/UBSan.
# Two at a time, here and under ASan: most black-box tests wait on sockets and timers. The timing
# tests (`slow`) and the chaos suite are RUN_SERIAL (tests/CMakeLists.txt): they run alone.
echo "=== dev: tests ==="
ctest --preset dev --timeout 900 -LE smuggling -j2

echo "=== asan-ubsan ==="
while [[ ! -e build/.asan-ubsan-built ]]; do
  kill -0 "$bg" 2>/dev/null || background_failed
  sleep 1
done
cmake --build --preset asan-ubsan  # nothing to do: a check that the build is complete
ctest --preset asan-ubsan --timeout 900 -LE '^(chaos|slow|python)$' -E '^(demo|bench_.*_smoke)$' -j2

wait "$bg" || background_failed
trap - EXIT
echo "=== tsan ==="
ctest --preset tsan --timeout 900
echo "=== fuzz ==="
scripts/fuzz.sh 10  # 10 s each over its corpus (the build is done)
echo "=== packages ==="
# Last: it installs the packages on this machine (the broker's unit is enabled). Lints the packages
# built above, installs them, verifies the units, builds a downstream program against them and
# sends a request through the installed broker.
scripts/package.sh --no-build
echo "all tests passed (format, dev, asan-ubsan, tsan, fuzz, packages)"
