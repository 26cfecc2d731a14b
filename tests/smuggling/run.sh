#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Request-smuggling suite: raw HTTP/1.1 vectors through scale0 gateway (and nginx as an oracle).
# Binary: $SCALE0_BIN (default /work/main/build/dev/apps/scale0/scale0). Under 60 s.
exec /usr/bin/python3 -m unittest discover -s "$(dirname "$0")" -p 'test_*.py' -v "$@"
