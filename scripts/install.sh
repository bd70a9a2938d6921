#!/usr/bin/env bash
# Install alpr-edge on a pole unit: Raspberry Pi OS bookworm (64-bit) or Jetson (JetPack 6).
#
#   sudo scripts/install.sh                        install or update; safe to run again
#   sudo scripts/install.sh --uninstall            remove the program and the unit; keep
#                                                  config, reads (/var/lib/alpr-edge), user
#   sudo scripts/install.sh --uninstall --purge    also remove config, reads and the user
#
# Options:
#   --platform pi|jetson|generic   default: detected (/proc/device-tree/model, /etc/nv_tegra_release)
#   --models DIR                   models to install (default: models/ of this checkout)
#   --root DIR                     install into DIR as if it were / (image builds, tests); implies
#                                  --no-systemctl
#   --no-systemctl                 do not talk to a running systemd; the unit is enabled offline
#                                  with `systemctl --root` (also when systemd is not PID 1)
#   --skip-venv                    do not create the venv or pip install (tests only)
#   --firstboot                    image builds: install and enable alpr-edge-firstboot.service,
#                                  which provisions the device from the bundle on its boot
#                                  partition and then enables alpr-edge.service (which this
#                                  leaves disabled); see docs/deploying.md
#
# What goes where:
#   /opt/alpr-edge/venv            the package (non-editable) in a venv; system site packages on
#                                  a Pi (apt's python3-picamera2) and a Jetson (apt's OpenCV with
#                                  GStreamer, NVIDIA's onnxruntime-gpu)
#   /opt/alpr-edge/models          the models; the config's default model paths point here
#   /etc/alpr-edge/config.toml     from config.example.toml when absent; never overwritten
#   /etc/alpr-edge/credentials/    files handed to the service by LoadCredential=
#   /var/lib/alpr-edge             reads database, device key, known-good models (StateDirectory)
#   /etc/systemd/system/alpr-edge.service (+ alpr-edge.service.d/jetson.conf on a Jetson)
#   /opt/alpr-edge/config.example.toml     the template `alpr-edge provision` fills
#   /usr/lib/sysusers.d/alpr-edge.conf     the alpr-edge user, in groups video and render
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT=/
PLATFORM=""
MODELS="$SRC/models"
ACTION=install
PURGE=0
USE_SYSTEMCTL=1
SKIP_VENV=0
FIRSTBOOT=0

NAME=alpr-edge
UNIT=alpr-edge.service
FIRSTBOOT_UNIT=alpr-edge-firstboot.service

die() { echo "install.sh: error: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --root) ROOT="$(realpath -m "${2:?--root needs a directory}")"; USE_SYSTEMCTL=0; shift 2 ;;
        --platform) PLATFORM="${2:?--platform needs pi, jetson or generic}"; shift 2 ;;
        --models) MODELS="$(realpath -m "${2:?--models needs a directory}")"; shift 2 ;;
        --uninstall) ACTION=uninstall; shift ;;
        --purge) PURGE=1; shift ;;
        --no-systemctl) USE_SYSTEMCTL=0; shift ;;
        --skip-venv) SKIP_VENV=1; shift ;;
        --firstboot) FIRSTBOOT=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
[[ $PURGE -eq 1 && $ACTION != uninstall ]] && die "--purge goes with --uninstall"
[[ $EUID -eq 0 ]] || die "run as root (sudo): it creates a system user and installs a unit"
[[ -d /run/systemd/system ]] || USE_SYSTEMCTL=0  # systemd is not PID 1 (container, chroot)

R="${ROOT%/}"  # prefix for every target path; empty for the real root
OPT="$R/opt/$NAME"
ETC="$R/etc/$NAME"
STATE="$R/var/lib/$NAME"
UNIT_DIR="$R/etc/systemd/system"
SYSUSERS="$R/usr/lib/sysusers.d/$NAME.conf"

detect_platform() {
    local model=""
    [[ -r "$R/proc/device-tree/model" ]] && model="$(tr -d '\0' < "$R/proc/device-tree/model")"
    if [[ -z "$model" && -z "$R" && -r /proc/device-tree/model ]]; then
        model="$(tr -d '\0' < /proc/device-tree/model)"
    fi
    if [[ "$model" == *"Raspberry Pi"* ]]; then echo pi
    elif [[ -e "$R/etc/nv_tegra_release" || "$model" == *Jetson* ]]; then echo jetson
    else echo generic
    fi
}

# put SRC DEST MODE [OWNER:GROUP]: copy only when the content differs, so a second run
# leaves files (and their times) alone; then make mode and owner right.
put() {
    local src="$1" dest="$2" mode="$3" owner="${4:-0:0}"
    mkdir -p "$(dirname "$dest")"
    if ! cmp -s "$src" "$dest"; then
        install -m "$mode" "$src" "$dest.new.$$"
        mv -f "$dest.new.$$" "$dest"
        say "installed $dest"
    fi
    chmod "$mode" "$dest"
    chown "$owner" "$dest"
}

# dir PATH MODE OWNER:GROUP
dir() { mkdir -p "$1"; chmod "$2" "$1"; chown "$3" "$1"; }

id_of() {  # id_of passwd|group NAME: numeric id in the target root's database
    awk -F: -v n="$2" '$1 == n { print $3; exit }' "$R/etc/$1"
}

systemctl_offline() {
    if command -v systemctl >/dev/null; then
        systemctl --root="${ROOT}" --quiet "$@"
    else  # what `systemctl enable/disable` does for WantedBy=multi-user.target
        local wants="$UNIT_DIR/multi-user.target.wants" unit="${2:-$UNIT}"
        if [[ "$1" == enable ]]; then
            mkdir -p "$wants" && ln -sfn "/etc/systemd/system/$unit" "$wants/$unit"
        else
            rm -f "$wants/$unit"
        fi
    fi
}

verify_model() {  # the manifest's sha256 must match, as the daemon checks at start
    local onnx="$1" json="${1%.onnx}.json" expected actual
    [[ -f "$json" ]] || die "$onnx has no manifest $json"
    expected="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["sha256"])' "$json")"
    actual="$(sha256sum "$onnx" | cut -d' ' -f1)"
    [[ "$expected" == "$actual" ]] || die "$onnx: sha256 does not match its manifest (corrupt copy?)"
}

install_venv() {
    local venv="$OPT/venv" pip
    local -a venv_args=()
    [[ $PLATFORM == pi || $PLATFORM == jetson ]] && venv_args=(--system-site-packages)
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "python3 is older than 3.11"
    if [[ ! -x "$venv/bin/python" ]]; then
        python3 -m venv "${venv_args[@]}" "$venv" \
            || die "cannot create the venv (apt-get install python3-venv)"
        say "created $venv ${venv_args[*]}"
    fi
    pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
    case "$PLATFORM" in
        jetson)
            # Keep apt's OpenCV (GStreamer for nvarguscamerasrc) and NVIDIA's onnxruntime-gpu:
            # the package without its pip OpenCV/onnxruntime, the rest of its dependencies.
            "${pip[@]}" --upgrade --no-deps "$SRC"
            "${pip[@]}" numpy paho-mqtt sqlite-utils pydantic pydantic-settings cryptography
            "$venv/bin/python" -c 'import onnxruntime' 2>/dev/null || say "WARNING: no" \
                "onnxruntime: install NVIDIA's onnxruntime-gpu wheel for JetPack 6 into $venv"
            "$venv/bin/python" -c 'import cv2, sys; sys.exit("GStreamer:  YES" not in
cv2.getBuildInformation())' 2>/dev/null || say "WARNING: this OpenCV has no GStreamer:" \
                "apt-get install python3-opencv (JetPack's), not the pip wheel"
            ;;
        *)
            "${pip[@]}" --upgrade "$SRC"
            ;;
    esac
    if [[ $PLATFORM == pi ]] && ! "$venv/bin/python" -c 'import picamera2' 2>/dev/null; then
        say "WARNING: picamera2 not importable: apt-get install -y python3-picamera2"
    fi
}

do_install() {
    [[ -n "$PLATFORM" ]] || PLATFORM="$(detect_platform)"
    [[ $PLATFORM =~ ^(pi|jetson|generic)$ ]] || die "unknown platform $PLATFORM"
    say "installing for $PLATFORM into ${ROOT}"
    shopt -s nullglob
    local models=("$MODELS"/*.onnx)
    [[ ${#models[@]} -gt 0 ]] || die "no models (*.onnx) in $MODELS"
    for m in "${models[@]}"; do verify_model "$m"; done

    # 1. The user, through systemd-sysusers so the same file serves image builds (--root).
    put "$SRC/systemd/$NAME.sysusers" "$SYSUSERS" 0644
    command -v systemd-sysusers >/dev/null || die "systemd-sysusers not found"
    mkdir -p "$R/etc"
    systemd-sysusers --root="$ROOT" "$SYSUSERS"
    local uid gid
    uid="$(id_of passwd "$NAME")"; gid="$(id_of group "$NAME")"
    [[ -n "$uid" && -n "$gid" ]] || die "user $NAME was not created"

    # 2. Directories.
    dir "$OPT" 0755 0:0
    dir "$OPT/models" 0755 0:0
    dir "$ETC" 0750 "0:$gid"
    dir "$ETC/credentials" 0700 0:0
    dir "$STATE" 0700 "$uid:$gid"

    # 3. The package in its venv, then the models beside it.
    if [[ $SKIP_VENV -eq 0 ]]; then
        install_venv
    else
        say "skipping the venv (--skip-venv)"
    fi
    for m in "${models[@]}"; do
        put "$m" "$OPT/models/$(basename "$m")" 0644
        put "${m%.onnx}.json" "$OPT/models/$(basename "${m%.onnx}.json")" 0644
    done

    # 4. Config and credentials: created when absent, never overwritten.
    if [[ ! -e "$ETC/config.toml" ]]; then
        put "$SRC/config.example.toml" "$ETC/config.toml" 0640 "0:$gid"
        say "edit $ETC/config.toml, then: alpr-edge check --connect --config /etc/$NAME/config.toml"
    fi
    if [[ ! -e "$ETC/credentials/mqtt-password" ]]; then
        # LoadCredential= fails the start when its file is missing; empty = no password.
        install -m 0600 -o 0 -g 0 /dev/null "$ETC/credentials/mqtt-password"
    fi

    put "$SRC/config.example.toml" "$OPT/config.example.toml" 0644  # for `alpr-edge provision`

    # 5. The unit (and the Jetson drop-in), enabled.
    put "$SRC/systemd/$UNIT" "$UNIT_DIR/$UNIT" 0644
    if [[ $PLATFORM == jetson ]]; then
        put "$SRC/systemd/jetson.conf" "$UNIT_DIR/$UNIT.d/jetson.conf" 0644
    elif [[ -e "$UNIT_DIR/$UNIT.d/jetson.conf" ]]; then
        rm -f "$UNIT_DIR/$UNIT.d/jetson.conf"; rmdir --ignore-fail-on-non-empty "$UNIT_DIR/$UNIT.d"
    fi
    if [[ $FIRSTBOOT -eq 1 ]]; then
        # The first-boot unit enables alpr-edge.service once the device has its identity.
        put "$SRC/systemd/$FIRSTBOOT_UNIT" "$UNIT_DIR/$FIRSTBOOT_UNIT" 0644
        if [[ $USE_SYSTEMCTL -eq 1 ]]; then
            systemctl daemon-reload
            systemctl enable --quiet "$FIRSTBOOT_UNIT"
        else
            systemctl_offline enable "$FIRSTBOOT_UNIT"
        fi
        say "done; at boot $FIRSTBOOT_UNIT provisions the device from /boot/firmware/alpr-edge"
        return
    fi
    if [[ $USE_SYSTEMCTL -eq 1 ]]; then
        systemctl daemon-reload
        systemctl enable --quiet "$UNIT"
        systemctl try-restart "$UNIT"  # an update takes effect; a fresh install waits for config
    else
        systemctl_offline enable "$UNIT"
    fi
    say "done; start with: systemctl start $NAME"
}

do_uninstall() {
    if [[ $USE_SYSTEMCTL -eq 1 ]]; then
        systemctl disable --now --quiet "$UNIT" 2>/dev/null || true
    elif [[ -e "$UNIT_DIR/$UNIT" ]]; then
        systemctl_offline disable "$UNIT" || true
    fi
    if [[ -e "$UNIT_DIR/$FIRSTBOOT_UNIT" ]]; then
        if [[ $USE_SYSTEMCTL -eq 1 ]]; then
            systemctl disable --quiet "$FIRSTBOOT_UNIT" 2>/dev/null || true
        else
            systemctl_offline disable "$FIRSTBOOT_UNIT" || true
        fi
    fi
    rm -f "$UNIT_DIR/$UNIT" "$UNIT_DIR/$FIRSTBOOT_UNIT"
    rm -rf "$UNIT_DIR/$UNIT.d"
    rm -rf "$OPT"
    [[ $USE_SYSTEMCTL -eq 1 ]] && systemctl daemon-reload
    if [[ $PURGE -eq 1 ]]; then
        rm -rf "$ETC" "$STATE"
        if [[ -n "$(id_of passwd "$NAME")" ]]; then
            userdel --root "$ROOT" "$NAME"
        fi
        if [[ -n "$(id_of group "$NAME")" ]]; then
            groupdel --root "$ROOT" "$NAME"
        fi
        rm -f "$SYSUSERS"
        say "removed $NAME with its config, reads and user"
    else
        rm -f "$SYSUSERS"  # the user stays (it owns $STATE); sysusers will not recreate it
        say "removed $NAME; kept /etc/$NAME, /var/lib/$NAME and the user (--purge removes them)"
    fi
}

if [[ $ACTION == install ]]; then do_install; else do_uninstall; fi
