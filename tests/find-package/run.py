#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The library as a downstream project consumes it (issue: "the library can be consumed").

  run.py <build-dir>

Installs the build into a fresh prefix (cmake --install), builds tests/find-package with
find_package(scale0 0.2) against it, and the same program with pkg-config; then starts the
installed `scale0 broker` and an echo worker on loopback ports the broker picks, and checks that
both programs get their request answered. Everything is removed at the end."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
READY = re.compile(rb"^ready frontend=(\S+) backend=(\S+)")


def run(cmd, **kw):
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, timeout=600, **kw)


def main():
    build = os.path.abspath(sys.argv[1])
    tmp = tempfile.mkdtemp(prefix="scale0-find-package-")
    procs = []
    try:
        prefix = os.path.join(tmp, "prefix")
        run(["cmake", "--install", build, "--prefix", prefix])
        for must in ["include/scale0/client.hpp", "include/scale0/version.hpp", "bin/scale0"]:
            assert os.path.exists(os.path.join(prefix, must)), "not installed: " + must
        configs = [os.path.join(d, f) for d, _, fs in os.walk(prefix) for f in fs
                   if f in ("scale0Config.cmake", "scale0ConfigVersion.cmake", "scale0.pc")]
        assert len(configs) == 3, "CMake package and pkg-config file: %r" % configs

        # 1. CMake: find_package(scale0 0.2 REQUIRED), scale0::scale0
        down = os.path.join(tmp, "downstream")
        run(["cmake", "-S", HERE, "-B", down, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
             "-DCMAKE_PREFIX_PATH=" + prefix])
        run(["cmake", "--build", down])
        # A version the package is not compatible with is refused.
        newer = os.path.join(tmp, "newer")
        os.makedirs(newer)
        with open(os.path.join(newer, "CMakeLists.txt"), "w") as f:
            f.write("cmake_minimum_required(VERSION 3.25)\nproject(newer LANGUAGES CXX)\n"
                    "find_package(scale0 0.3 REQUIRED)\n")
        r = subprocess.run(["cmake", "-S", newer, "-B", os.path.join(newer, "build"),
                            "-DCMAKE_PREFIX_PATH=" + prefix], capture_output=True, timeout=120)
        assert r.returncode != 0 and b"scale0" in r.stderr, "find_package(scale0 0.3): %r" % r.stderr

        # 2. pkg-config
        pc_dir = os.path.dirname([c for c in configs if c.endswith(".pc")][0])
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "scale0"],
                               env=dict(os.environ, PKG_CONFIG_PATH=pc_dir), check=True,
                               capture_output=True, timeout=60).stdout.decode().split()
        pc_prog = os.path.join(tmp, "downstream-pc")
        run(["g++", "-std=c++20", os.path.join(HERE, "main.cpp"), "-o", pc_prog] + flags)

        # 3. one request through the installed broker and worker
        scale0 = os.path.join(prefix, "bin", "scale0")
        broker = subprocess.Popen(
            [scale0, "broker", "--frontend", "tcp://127.0.0.1:*", "--backend", "tcp://127.0.0.1:*",
             "--heartbeat", "tcp://127.0.0.1:*", "--peer-listen", "tcp://127.0.0.1:*",
             "--metrics-listen", ""], stdout=subprocess.PIPE)
        procs.append(broker)
        line = broker.stdout.readline()
        m = READY.match(line)
        assert m, "the broker's ready line: %r" % line
        frontend, backend = m.group(1).decode(), m.group(2).decode()
        procs.append(subprocess.Popen([scale0, "worker", "--broker", backend, "--service", "echo",
                                       "--echo"]))
        for prog in [os.path.join(down, "downstream"), pc_prog]:
            deadline = time.monotonic() + 20
            while True:
                r = subprocess.run([prog, frontend, "echo", "hello downstream"],
                                   capture_output=True, timeout=30)
                if r.returncode == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)  # the worker may not have registered yet: 503
            assert r.returncode == 0, "%s: %r %r" % (prog, r.stdout, r.stderr)
            assert r.stdout == b"hello downstream\n", r.stdout
            assert re.match(rb"libscale0 0\.2\.\d+ \(commit ", r.stderr), r.stderr
            print("ok: %s" % os.path.basename(prog), flush=True)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
