#!/bin/sh
# scripts/rootfs.sh DIR [BINARY]
#
# Assemble the root filesystem mc-proxy runs on, and nothing else: the
# compiled binary at /usr/local/bin/mc-proxy, exactly the shared objects it
# loads, /etc/passwd and /etc/group with an unprivileged mc-proxy user
# (uid/gid 65532), and /srv/mc-proxy owned by it. The scratch container
# image (Containerfile, Containerfile.release) and the minimal-rootfs test are
# both built from this script, so they cannot drift apart.
#
# The libraries are not a hand-kept list: the dynamic loader named in the
# binary's PT_INTERP header is asked for its own resolution of the ELF NEEDED
# entries (`ld.so --list`, what ldd runs), so the copy holds what the loader
# would load, from where it would load it. Needs readelf (binutils).
#
# At run time the binary needs only /proc besides this tree: it reads its
# embedded program through /proc/self/exe (any container runtime mounts it).
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 DIR [BINARY]   (BINARY defaults to dist/mc-proxy)" >&2
  exit 2
fi
dir=$1
bin=${2:-dist/mc-proxy}
uid=65532

[ -x "$bin" ] || { echo "$0: $bin is not an executable (run: bun run build)" >&2; exit 1; }
command -v readelf >/dev/null 2>&1 || { echo "$0: readelf not found (install binutils)" >&2; exit 1; }

interp=$(readelf -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)\]$/\1/p')
[ -n "$interp" ] || { echo "$0: $bin has no program interpreter (not a dynamic ELF executable?)" >&2; exit 1; }
[ -x "$interp" ] || { echo "$0: the loader $interp that $bin names is not on this machine" >&2; exit 1; }

# Every object the loader resolves ("name => /path (addr)" or "/path (addr)"),
# the loader itself included; linux-vdso has no file.
libs=$("$interp" --list "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }' | sort -u)
[ -n "$libs" ] || { echo "$0: the loader listed no libraries for $bin" >&2; exit 1; }

mkdir -p "$dir/usr/local/bin" "$dir/etc" "$dir/srv/mc-proxy"
cp "$bin" "$dir/usr/local/bin/mc-proxy"
chmod 0755 "$dir/usr/local/bin/mc-proxy"
for lib in $libs; do
  mkdir -p "$dir$(dirname "$lib")"
  # -L: the file itself, under the name the loader asks for.
  cp -L "$lib" "$dir$lib"
done

cat >"$dir/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
mc-proxy:x:$uid:$uid:mc-proxy:/srv/mc-proxy:/sbin/nologin
EOF
cat >"$dir/etc/group" <<EOF
root:x:0:
mc-proxy:x:$uid:
EOF
chmod 0644 "$dir/etc/passwd" "$dir/etc/group"
chmod 0750 "$dir/srv/mc-proxy"
if [ "$(id -u)" = 0 ]; then chown "$uid:$uid" "$dir/srv/mc-proxy"; fi

echo "rootfs: $dir ($(echo "$libs" | wc -l) shared objects: $(echo $libs | tr '\n' ' '))"
