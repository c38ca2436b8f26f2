#!/bin/sh
# Builds the static workload programs in test-bundles/workloads/*.c into OUTDIR.
#   build-workloads.sh OUTDIR
# Static (glibc) so they run in a busybox rootfs with no shared libraries.
set -eu
out=${1:?usage: build-workloads.sh OUTDIR}
src=$(cd "$(dirname "$0")/workloads" && pwd)
mkdir -p "$out"
for c in "$src"/*.c; do
    name=$(basename "$c" .c)
    # Rebuild only when the source is newer: tests call this concurrently.
    if [ ! -x "$out/$name" ] || [ "$c" -nt "$out/$name" ]; then
        gcc -static -O2 -Wall -pthread -o "$out/.$name.tmp.$$" "$c"
        mv -f "$out/.$name.tmp.$$" "$out/$name"
    fi
done
