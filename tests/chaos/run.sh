#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Scale0 fault-ledger chaos suite. Binary: $SCALE0_BIN. Needs root for the partition phase (skipped otherwise).
# Usage: SCALE0_BIN=path/to/scale0 tests/chaos/run.sh [--phase NAME ...] [--list] [--keep]
cd "$(dirname "$0")" && exec /usr/bin/python3 ledger.py "$@"
