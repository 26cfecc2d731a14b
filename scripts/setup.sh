#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian 12 packages Scale0 builds and tests with. Idempotent: packages already
# installed are skipped, and apt-get is not run at all when nothing is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config clang-format
  libzmq3-dev cppzmq-dev libcli11-dev libspdlog-dev libfmt-dev libtomlplusplus-dev
  nlohmann-json3-dev libboost-dev libsystemd-dev
  prometheus-cpp-dev  # the /metrics text format (prometheus-cpp's core library)
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-zmq
  python3-pytest  # the Python library's tests (python/tests, CTest label python)
  nats-server  # the comparison benchmark (bench/compare) runs against it
  mongrel2-core sqlite3  # the Mongrel2 front door: its black-box test, and the HTTP comparison
  curl  # the gateway's black-box tests and the demo drive it with a real HTTP client
  wrk nginx-light  # the HTTP comparison (bench/http): the load generator, and nginx to compare with
  libssl-dev openssl  # HTTPS at the gateway (Boost.Asio over OpenSSL); openssl s_client in its tests
  prometheus  # promtool: /metrics of broker and gateway checked by `promtool check metrics`
  iproute2  # the chaos suite's partition phase: ip netns and a veth pair (tests/chaos)
  # The status page's browser test (tests/blackbox/test_status_page.py): headless Chromium loads the
  # page, and a font so that its screenshot has text.
  chromium fonts-dejavu-core
  # The libFuzzer targets (scripts/fuzz.sh): clang 14, and libclang-rt-14-dev, which holds
  # libclang_rt.fuzzer-x86_64.a and clang's ASan/UBSan runtimes (clang only recommends it, and
  # recommends are not installed here); llvm-14 for llvm-symbolizer, so crash stacks have names.
  clang libclang-rt-14-dev llvm-14
  # Debian packaging (scripts/package.sh, debian/): debhelper for dpkg-buildpackage, help2man for
  # the man pages, lintian; systemd for systemd-analyze verify/security on the installed units
  # (a container may lack it; installing it there starts nothing).
  debhelper help2man lintian systemd
  dh-python pybuild-plugin-pyproject python3-all python3-setuptools  # the python3-scale0 package
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Only promtool is wanted from the prometheus package: where systemd runs, its server was started
# and enabled by the install; stop it (it would scrape and listen on :9090 during the tests).
if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null &&
   systemctl is-enabled --quiet prometheus 2>/dev/null; then
  "${sudo_cmd[@]}" systemctl disable --now prometheus || true
fi
