#!/usr/bin/env bash
# Builds the raftkv image where no base image can be pulled (see Dockerfile
# and docs/kubernetes.md):
#   1. a distroless-like Debian bookworm root (glibc, libgcc, CA certificates,
#      tzdata, a passwd; no shell): debootstrap, keep only those packages'
#      files, `docker import` as $BASE (cached: made once per machine; 1-3 min
#      depending on the mirror);
#   2. `raftkv` and `raftctl` built on the host (cargo, release);
#   3. `docker build --target host` of the project's Dockerfile on that base.
# On a machine that can pull, `docker build .` alone does the same from
# public bases.
#
# Usage: scripts/image.sh [TAG]        (default raftkv:dev)
#        scripts/image.sh base         (only make the base)
#        RAFTKV_BIN_DIR=DIR scripts/image.sh TAG   (take raftkv and raftctl
#            from DIR instead of building them: the container tests run
#            inside `cargo test` and pass the binaries cargo built)
# Env:   RAFTKV_BASE_IMAGE  base tag (default raftkv-base/bookworm-runtime:1; a new
#                           recipe gets a new tag, so an old cached base is not reused)
#        DEBIAN_MIRROR      (default: the first deb.debian.org-style URI in apt's sources)
#        CARGO_TARGET_DIR   respected
# Prints the image tag on the last line of stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${RAFTKV_BASE_IMAGE:-raftkv-base/bookworm-runtime:1}
TAG=${1:-raftkv:dev}
TARGET_DIR=${CARGO_TARGET_DIR:-target}

log() { echo "image.sh: $*" >&2; }
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo   # debootstrap needs root

mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(grep -hoE '(URIs:[[:space:]]*|^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)https?://[^[:space:]]+/debian/?([[:space:]]|$)' \
        /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
        | grep -oE 'https?://[^[:space:]]+' | head -1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

# A distroless-like root made from a bookworm minbase: only the files of
# the packages the node needs at run time (glibc, libgcc, CA certificates,
# base-files, netbase) and a passwd naming the non-root user; no shell, no
# package manager. The node links nothing else (ldd: libc, libm, libgcc_s).
RUNTIME_PACKAGES="base-files netbase libc6 libgcc-s1 ca-certificates tzdata"
make_base() {
  if docker image inspect "$BASE" >/dev/null 2>&1; then
    log "base $BASE cached"
    return
  fi
  command -v debootstrap >/dev/null || { log "debootstrap missing (apt-get install debootstrap)"; exit 1; }
  local work
  work=$(mktemp -d /tmp/raftkv-rootfs.XXXXXX)
  trap '$SUDO rm -rf "$work"' RETURN
  local full=$work/full slim=$work/slim m
  m=$(mirror)
  log "debootstrap bookworm from $m"
  $SUDO debootstrap --variant=minbase --include=ca-certificates,tzdata,netbase bookworm "$full" "$m" >&2
  $SUDO mkdir -p "$slim"/usr/bin "$slim"/usr/sbin "$slim"/usr/lib "$slim"/usr/lib64
  # First the merged-/usr links (/lib -> usr/lib, ...) the loader path relies on; the
  # packages list their files under the old paths.
  for l in bin sbin lib lib64; do
    if [ -L "$full/$l" ]; then $SUDO cp -a "$full/$l" "$slim/$l"; fi
  done
  # Every file (and symlink) the runtime packages own, with its parents.
  # shellcheck disable=SC2086
  for p in $RUNTIME_PACKAGES; do
    $SUDO chroot "$full" dpkg-query -L "$p"
  done | sort -u | while read -r f; do
    if [ -e "$full$f" ] || [ -L "$full$f" ]; then
      if [ ! -d "$full$f" ] || [ -L "$full$f" ]; then echo "${f#/}"; fi
    fi
  done | $SUDO tar -C "$full" --no-recursion -cf - -T - | $SUDO tar -C "$slim" --keep-directory-symlink -xf -
  $SUDO rm -rf "$slim"/usr/share/doc "$slim"/usr/share/man "$slim"/usr/share/info "$slim"/usr/share/locale "$slim"/usr/share/lintian
  $SUDO mkdir -p "$slim"/tmp "$slim"/etc "$slim"/var/lib "$slim"/home/nonroot "$slim"/proc "$slim"/sys "$slim"/dev
  $SUDO chmod 1777 "$slim"/tmp
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' | $SUDO tee "$slim"/etc/passwd >/dev/null
  printf 'root:x:0:\nnonroot:x:65532:\n' | $SUDO tee "$slim"/etc/group >/dev/null
  printf 'hosts: files dns\n' | $SUDO tee "$slim"/etc/nsswitch.conf >/dev/null
  $SUDO chown 65532:65532 "$slim"/home/nonroot
  $SUDO tar -C "$slim" --numeric-owner -c . \
    | docker import --message "bookworm runtime files (scripts/image.sh)" - "$BASE" >&2
  log "base $BASE made ($(docker image inspect -f '{{.Size}}' "$BASE" | awk '{printf "%.0f MB", $1/1e6}'))"
}

build_binaries() {
  local from=${RAFTKV_BIN_DIR:-}
  if [ -z "$from" ]; then
    log "cargo build --release (raftkv, raftctl)"
    cargo build --release --bin raftkv --bin raftctl >&2
    from=$TARGET_DIR/release
  fi
  local out=target/image
  rm -rf "$out"
  mkdir -p "$out/data"
  cp "$from/raftkv" "$from/raftctl" "$out/"
  strip "$out/raftkv" "$out/raftctl" 2>/dev/null || true
}

build_image() {
  local rev; rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  log "docker build --target host -> $TAG"
  docker build --quiet --target host \
    --build-arg RUNTIME_BASE="$BASE" \
    --build-arg REVISION="$rev" \
    --build-arg VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)" \
    -t "$TAG" . >&2
  log "image $TAG: $(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.1f MB", $1/1e6}')"
}

# One debootstrap at a time on this machine.
exec 8>"${TMPDIR:-/tmp}/raftkv-base-image.lock"
flock 8
make_base
flock -u 8
if [ "$TAG" = base ]; then echo "$BASE"; exit 0; fi
# target/image is the one build context: one build at a time per checkout.
mkdir -p target
exec 9>target/image.lock
flock 9
build_binaries
build_image
echo "$TAG"
