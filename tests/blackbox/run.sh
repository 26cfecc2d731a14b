#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Black-box integration tests for Scale0. Binary: $SCALE0_BIN (default build/dev/apps/scale0/scale0).
# Set SCALE0_TEST_VERBOSE=1 to dump broker stderr for every test (it is dumped on failure anyway).
exec /usr/bin/python3 -m unittest discover -s "$(dirname "$0")" -p 'test_*.py' -v "$@"
