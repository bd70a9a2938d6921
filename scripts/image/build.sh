#!/usr/bin/env bash
# Build the flash-ready Raspberry Pi image: Raspberry Pi OS Lite (bookworm, 64-bit) with
# alpr-edge, its models, alpr-edge.service (disabled until provisioned) and
# alpr-edge-firstboot.service installed, SSH off. Flashing and first boot: docs/deploying.md.
#
#   scripts/image/build.sh [--work DIR]    the image lands in DIR/pi-gen/deploy/
#                                          (default DIR: build/image in this checkout)
#
# Needs a Linux host with git and Docker (pi-gen's build-docker.sh), binfmt_misc with
# qemu-user-static for arm64 on an x86 host (apt-get install qemu-user-static binfmt-support),
# and network to github.com, archive.raspberrypi.com, deb.debian.org and pypi.org.
# Reproducible inputs: pi-gen at a fixed release tag, alpr-edge from one git commit
# (uncommitted changes are refused), Python packages pinned in constraints.txt.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PI_GEN_REPO=https://github.com/RPi-Distro/pi-gen.git
PI_GEN_REF=2024-11-19-raspios-bookworm-arm64
WORK="$REPO/build/image"

die() { echo "build.sh: error: $*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --work) WORK="$(realpath -m "${2:?--work needs a directory}")"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
for tool in git docker; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
git -C "$REPO" diff --quiet HEAD -- || die "uncommitted changes in $REPO: the image is built from HEAD"
COMMIT="$(git -C "$REPO" rev-parse HEAD)"

PI_GEN="$WORK/pi-gen"
rm -rf "$PI_GEN"
mkdir -p "$WORK"
git clone --quiet --depth 1 --branch "$PI_GEN_REF" "$PI_GEN_REPO" "$PI_GEN"
cp -r "$HERE/stage-alpr-edge" "$PI_GEN/stage-alpr-edge"
touch "$PI_GEN/stage2/SKIP_IMAGES"  # only the alpr-edge image, not plain Lite as well
mkdir -p "$PI_GEN/stage-alpr-edge/00-install/files"
git -C "$REPO" archive --format=tar -o "$PI_GEN/stage-alpr-edge/00-install/files/alpr-edge-src.tar" "$COMMIT"
{
    cat "$HERE/config"
    echo "IMG_DATE=$(git -C "$REPO" log -1 --format=%cs "$COMMIT")"  # named by the commit, not the build day
    echo "# alpr-edge commit $COMMIT"
} > "$PI_GEN/config"

echo "build.sh: pi-gen $PI_GEN_REF, alpr-edge $COMMIT"
(cd "$PI_GEN" && ./build-docker.sh)
ls -l "$PI_GEN/deploy"
