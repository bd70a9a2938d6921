#!/bin/bash -e
# pi-gen sub-stage, run on the build host with ROOTFS_DIR set: unpack the alpr-edge source
# (files/alpr-edge-src.tar, made by scripts/image/build.sh from one git commit plus models/)
# into the image, then install it inside the image with scripts/install.sh --firstboot:
# venv with pinned dependencies, models checked against their manifests, the user, the units.
# alpr-edge.service stays disabled until alpr-edge-firstboot.service has provisioned the
# device from the bundle on its boot partition.

SRC=/usr/src/alpr-edge
[ -f files/alpr-edge-src.tar ] || { echo "files/alpr-edge-src.tar missing: run scripts/image/build.sh" >&2; exit 1; }
rm -rf "${ROOTFS_DIR}${SRC}"
install -d -m 0755 "${ROOTFS_DIR}${SRC}"
tar -xf files/alpr-edge-src.tar -C "${ROOTFS_DIR}${SRC}" --no-same-owner

on_chroot << CHROOT
set -e
export PIP_CONSTRAINT=${SRC}/scripts/image/constraints.txt PIP_NO_CACHE_DIR=1
bash ${SRC}/scripts/install.sh --platform pi --firstboot --no-systemctl
/opt/alpr-edge/venv/bin/alpr-edge --version
/opt/alpr-edge/venv/bin/python -c "import numpy, onnxruntime, cv2"
systemctl is-enabled --quiet alpr-edge-firstboot.service
for off in alpr-edge.service ssh.service; do
	if systemctl is-enabled --quiet "\$off"; then echo "\$off must be disabled in the image" >&2; exit 1; fi
done
CHROOT
