#!/bin/sh
# Fails if libyodel.so exports a function or object outside the yd_ API: a program that links
# libyodel and defines its own conn_new must not interpose on the library's internals.
set -eu
lib=$1
nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVWiu]$/ {print $3}' >"${TMPDIR:-/tmp}/yodel-exports.$$"
stray=$(grep -v '^yd_' "${TMPDIR:-/tmp}/yodel-exports.$$" || true)
count=$(wc -l <"${TMPDIR:-/tmp}/yodel-exports.$$")
rm -f "${TMPDIR:-/tmp}/yodel-exports.$$"
if [ -n "$stray" ]; then
    echo "libyodel.so exports symbols outside yd_:" $stray >&2
    exit 1
fi
if [ "$count" -lt 50 ]; then
    echo "libyodel.so exports only $count symbols: is YD_EXTERN lost?" >&2
    exit 1
fi
echo "libyodel.so exports $count symbols, all yd_"
