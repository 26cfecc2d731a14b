#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# A program that knows nothing about Scale0: reads the request on stdin, answers on stdout.
tr 'a-z' 'A-Z'
