#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the libFuzzer targets with clang in build/fuzz and runs each one for a bounded time over
# its committed corpus (tests/fuzz/corpus/<target>). A crash, a leak, an uncaught exception or an
# input slower than the per-input timeout fails the script; the input that did it is left in
# build/fuzz/artifacts/. New inputs found go to a scratch directory, not to the committed corpus.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 20 s, every target)
#   scripts/fuzz.sh --build-only [TARGET...]             (scripts/test.sh builds them early)
set -euo pipefail
cd "$(dirname "$0")/.."

build_only=no
if [[ ${1:-} == --build-only ]]; then build_only=yes; set -- 0 "${@:2}"; fi
seconds=${1:-20}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(scale0_decode_fuzz scale0_config_fuzz scale0_mongrel2_fuzz scale0_http_request_fuzz
           scale0_http_response_fuzz scale0_peer_fuzz)
fi

build=build/fuzz
if [[ ! -f $build/CMakeCache.txt ]]; then
  CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSCALE0_FUZZ=ON -DSCALE0_BUILD_TESTS=OFF >/dev/null
fi
cmake --build "$build" -j2 --target "${targets[@]}"
if [[ $build_only == yes ]]; then exit 0; fi

symbolizer=/usr/lib/llvm-14/bin/llvm-symbolizer
if [[ -x $symbolizer ]]; then export ASAN_SYMBOLIZER_PATH=$symbolizer; fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1

mkdir -p "$build/artifacts"
for t in "${targets[@]}"; do
  corpus=tests/fuzz/corpus/$t
  scratch=$(mktemp -d)
  echo "=== $t: ${seconds}s over $(find "$corpus" -type f | wc -l) corpus inputs ==="
  if ! "$build/tests/fuzz/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" "$scratch" "$corpus" \
    >"$build/artifacts/$t.log" 2>&1; then
    tail -n 60 "$build/artifacts/$t.log"
    rm -rf "$scratch"
    echo "fuzz: $t failed; the input is in $build/artifacts/ (tests/fuzz/README.md)" >&2
    exit 1
  fi
  grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done)' "$build/artifacts/$t.log" || true
  rm -rf "$scratch"
done
echo "fuzz: ${#targets[@]} targets ran ${seconds}s each without a finding"
