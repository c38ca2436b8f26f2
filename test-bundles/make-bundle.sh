#!/bin/sh
# Builds an OCI bundle, fully offline, into DIR:
#   make-bundle.sh DIR [ARG...]
# rootfs: Debian's busybox-static with every applet linked, plus the static
# workload programs of test-bundles/workloads in /bin. config.json: `godwit spec`
# adjusted for tests: no terminal, writable rootfs, process args = ARG... (default: sh).
# GODWIT names the godwit binary (default: godwit on PATH).
set -eu
dir=${1:?usage: make-bundle.sh DIR [ARG...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
godwit=${GODWIT:-godwit}
busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || { echo "make-bundle.sh: $busybox not found: apt-get install busybox-static" >&2; exit 1; }
command -v jq >/dev/null || { echo "make-bundle.sh: jq not found: apt-get install jq" >&2; exit 1; }

mkdir -p "$dir/rootfs"
root="$dir/rootfs"
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/etc" "$root/root" "$root/run"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' > "$root/etc/group"
chmod 1777 "$root/tmp"

workloads=${WORKLOADS_DIR:-$here/../target/workloads}
"$here/build-workloads.sh" "$workloads"
cp "$workloads"/* "$root/bin/"

"$godwit" spec --bundle "$dir"
# Adjust the default spec for tests: no terminal, writable rootfs, our args.
# Each arg goes through --arg so that jq never reads one as its own option.
[ $# -gt 0 ] || set -- sh
args_json=$(for a in "$@"; do jq -n --arg a "$a" '$a'; done | jq -cs .)
jq --argjson args "$args_json" \
    '.process.terminal = false | .root.readonly = false | .process.args = $args' \
    < "$dir/config.json" > "$dir/config.json.tmp"
mv -f "$dir/config.json.tmp" "$dir/config.json"
