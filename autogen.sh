#!/bin/sh
# Generates ./configure and the Makefile templates.
set -e
cd "$(dirname "$0")"
mkdir -p m4 build-aux
autoreconf -fi
# automake installs test-driver but never tap-driver.sh (even with -fi);
# the TAP integration tests (SH_LOG_DRIVER in tests/tests.am) need it.
cp -f "$(automake --print-libdir)/tap-driver.sh" build-aux/tap-driver.sh
