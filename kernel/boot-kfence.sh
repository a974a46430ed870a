#!/bin/bash
# boot-kfence.sh OUTDIR [--append EXTRA]...
#
# Boots a stock Debian 6.12 kernel (CONFIG_KFENCE=y) under QEMU with software
# emulation (KVM does not work on these machines), from a busybox initramfs
# whose init (guest-init.sh) drives KFENCE through sysfs, loads the test module
# module/kq_kfence.c (every KFENCE bug type, plus leaks) and sends back what
# ufence reads. OUTDIR then holds a collected tree for `ufence ... kernel --root OUTDIR`:
#   sys/module/kfence/parameters/*, sys/kernel/debug/kfence/{stats,objects},
#   sys/kernel/slab/<cache>/skip_kfence, dmesg.txt, console.log, control.log,
#   states/<NN-stage>/... (copies before/after each control step), capture.info.
#
# The kernel boots with kfence.sample_interval=1; `--append kfence.sample_interval=0`
# boots it with KFENCE off instead (the last value on the command line wins), and
# the guest then checks the debugfs dir is absent and enables KFENCE late.
#
# Idempotent: installs missing tools with apt-get (needs root), downloads the
# kernel debs with `apt-get download` into a cache and reuses them, caches the
# built module by source hash. Environment:
#   UFENCE_KERNEL_CACHE   cache dir (default kernel/work/cache)
#   UFENCE_KERNEL_FLAVOUR cloud-amd64 (default, smaller) or amd64
#   UFENCE_KERNEL_VERSION e.g. 6.12.117+deb12 (default: what linux-image-6.12-amd64 depends on)
#   UFENCE_QEMU_TIMEOUT   seconds for the boot (default 300)
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
META=linux-image-6.12-amd64
FLAVOUR=${UFENCE_KERNEL_FLAVOUR:-cloud-amd64}
CACHE=${UFENCE_KERNEL_CACHE:-$HERE/work/cache}
QEMU_TIMEOUT=${UFENCE_QEMU_TIMEOUT:-300}
CMDLINE="console=ttyS0 kfence.sample_interval=1 panic=1 quiet log_buf_len=1M"

log() { echo "boot-kfence: $*" >&2; }
# set -e would otherwise end the script without a word
trap 'log "error: line $LINENO: \"$BASH_COMMAND\" failed"' ERR
die() { log "error: $*"; exit 1; }
usage() { echo "usage: $0 OUTDIR [--append 'KERNEL ARGS']..." >&2; exit 2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

OUTDIR='' APPEND=''
while [ $# -gt 0 ]; do
    case $1 in
    --append) [ $# -ge 2 ] || usage; APPEND="$APPEND $2"; shift 2 ;;
    --append=*) APPEND="$APPEND ${1#--append=}"; shift ;;
    -h|--help) usage ;;
    -*) log "unknown option $1"; usage ;;
    *) [ -z "$OUTDIR" ] || usage; OUTDIR=$1; shift ;;
    esac
done
[ -n "$OUTDIR" ] || usage
case $FLAVOUR in cloud-amd64|amd64) ;; *) die "UFENCE_KERNEL_FLAVOUR must be cloud-amd64 or amd64" ;; esac
if [ -e "$OUTDIR" ] && [ ! -e "$OUTDIR/capture.info" ] && [ -n "$(ls -A "$OUTDIR")" ]; then
    die "$OUTDIR exists and is not an earlier capture; refusing to overwrite it"
fi
T0=$(now)

# --- host tools ------------------------------------------------------------
apt_install() {
    [ "$(id -u)" = 0 ] || die "missing packages: $*; install them (apt-get install $*) or run as root"
    log "apt-get install $*"
    timeout 600 apt-get install -y --no-install-recommends "$@" >/dev/null ||
        { timeout 300 apt-get update >/dev/null && timeout 600 apt-get install -y --no-install-recommends "$@" >/dev/null; } ||
        die "apt-get install $* failed"
}
command -v apt-get >/dev/null || die "apt-get not found: this script needs Debian's archive"
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
# the initramfs needs the static busybox; the dynamic one would lack its libc
[ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null)" = "install ok installed" ] || missing+=(busybox-static)
command -v cpio >/dev/null || missing+=(cpio)
command -v x86_64-linux-gnu-gcc-12 >/dev/null || missing+=(gcc-12)   # the headers force CC=...-gcc-12
command -v make >/dev/null || missing+=(make)
command -v python3 >/dev/null || missing+=(python3)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
T_TOOLS=$(elapsed "$T0")

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -w 900 9 || die "cache $CACHE is locked by another run"

# --- kernel version and debs -------------------------------------------------
# The lists can be unreadable for a moment while another apt-get updates them: retry.
resolve_version() {
    local v try
    for try in 1 2 3; do
        v=$(apt-cache depends "$META" 2>/dev/null | sed -n 's/^ *Depends: linux-image-\(.*\)-amd64$/\1/p' | head -n1) || true
        [ -n "$v" ] && break
        sleep "$try"
    done
    echo "$v"
}
KVER=${UFENCE_KERNEL_VERSION:-}
if [ -z "$KVER" ]; then
    KVER=$(resolve_version)
    if [ -z "$KVER" ] && [ "$(id -u)" = 0 ]; then
        log "apt-get update ($META unknown)"
        timeout 300 apt-get update >/dev/null || true
        KVER=$(resolve_version)
    fi
    if [ -z "$KVER" ]; then   # offline: reuse the one cached kernel, if there is exactly one
        cached=()
        for d in "$CACHE"/root-*+deb*-"$FLAVOUR"; do
            case $d in *-cloud-"$FLAVOUR") ;; *) [ -e "$d/.complete" ] && cached+=("${d##*/}") ;; esac
        done
        [ ${#cached[@]} = 1 ] || die "cannot resolve $META (no apt lists?) and no single cached kernel"
        KVER=${cached[0]#root-}; KVER=${KVER%-"$FLAVOUR"}
    fi
fi
KREL=$KVER-$FLAVOUR
PKGS=(linux-image-"$KREL" linux-headers-"$KREL" linux-headers-"$KVER"-common linux-kbuild-"$KVER")
mkdir -p "$CACHE/debs"
need=()
for p in "${PKGS[@]}"; do
    compgen -G "$CACHE/debs/${p}_*.deb" >/dev/null || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    log "apt-get download ${need[*]}"
    dl=$(mktemp -d "$CACHE/debs.XXXXXX")
    # downloads land in a scratch dir and move in whole: a cut download is never reused
    if ! (cd "$dl" && timeout 600 apt-get download "${need[@]}" >/dev/null 2>&1); then
        if [ "$(id -u)" = 0 ]; then timeout 300 apt-get update >/dev/null 2>&1 || true; fi
        (cd "$dl" && timeout 600 apt-get download "${need[@]}" >/dev/null) || { rm -rf "$dl"; die "apt-get download ${need[*]} failed"; }
    fi
    mv "$dl"/*.deb "$CACHE/debs/" && rmdir "$dl"
fi
T_DEBS=$(elapsed "$T0")

ROOT=$CACHE/root-$KREL
if [ ! -e "$ROOT/.complete" ]; then
    log "extracting $KREL"
    rm -rf "$ROOT" "$ROOT.tmp" && mkdir -p "$ROOT.tmp"
    dpkg-deb --fsys-tarfile "$CACHE"/debs/linux-image-"$KREL"_*.deb | tar -x -C "$ROOT.tmp" ./boot
    for p in "${PKGS[@]:1}"; do dpkg -x "$CACHE"/debs/"$p"_*.deb "$ROOT.tmp"; done
    mv "$ROOT.tmp" "$ROOT"
    # the flavour's Makefile includes the common headers by their installed path
    sed -i "s|include /usr/src/|include $ROOT/usr/src/|" "$ROOT/usr/src/linux-headers-$KREL/Makefile"
    touch "$ROOT/.complete"
fi
VMLINUZ=$ROOT/boot/vmlinuz-$KREL
HDRS=$ROOT/usr/src/linux-headers-$KREL
if [ ! -f "$VMLINUZ" ] || [ ! -d "$HDRS" ]; then die "cache $ROOT is incomplete; delete it"; fi
T_EXTRACT=$(elapsed "$T0")

# --- the test module, cached by source and kernel --------------------------------
SRC_HASH=$(cat "$HERE/module/kq_kfence.c" "$HERE/module/Makefile" | sha256sum | cut -c1-16)
KODIR=$CACHE/ko-$KREL-$SRC_HASH
if [ ! -f "$KODIR/kq_kfence.ko" ]; then
    log "building kq_kfence.ko"
    rm -rf "$KODIR.tmp" && mkdir -p "$KODIR.tmp"
    cp "$HERE/module/kq_kfence.c" "$HERE/module/Makefile" "$KODIR.tmp/"
    # no pahole here: skip BTF for the module
    timeout 300 make -s -C "$HDRS" M="$KODIR.tmp" CONFIG_DEBUG_INFO_BTF_MODULES= modules >"$KODIR.tmp/build.log" 2>&1 ||
        { cat "$KODIR.tmp/build.log" >&2; die "module build failed"; }
    rm -rf "$KODIR" && mv "$KODIR.tmp" "$KODIR"
fi
T_MODULE=$(elapsed "$T0")
flock -u 9

# --- initramfs and boot ---------------------------------------------------------
RUN=$(mktemp -d "${TMPDIR:-/tmp}/boot-kfence.XXXXXX")
trap 'rm -rf "$RUN"' EXIT
mkdir -p "$RUN/ir/bin"
cp /bin/busybox "$RUN/ir/bin/busybox"
install -m 0755 "$HERE/guest-init.sh" "$RUN/ir/init"
cp "$KODIR/kq_kfence.ko" "$RUN/ir/"
(cd "$RUN/ir" && find . | cpio -o -H newc --quiet | gzip -1) > "$RUN/initrd.gz"
T_INITRD=$(elapsed "$T0")

APPEND=${APPEND# }
FULL_CMDLINE="$CMDLINE${APPEND:+ $APPEND}"
log "booting $KREL: $FULL_CMDLINE"
TB=$(now)
rc=0
# ttyS0: kernel console; ttyS1: the guest's file transfer, free of kernel messages
timeout -k 10 "$QEMU_TIMEOUT" qemu-system-x86_64 -nodefaults -display none -no-reboot \
    -accel tcg,thread=multi -cpu max -smp 2 -m 512 \
    -kernel "$VMLINUZ" -initrd "$RUN/initrd.gz" -append "$FULL_CMDLINE" \
    -chardev file,id=con,path="$RUN/console.raw" -serial chardev:con \
    -chardev file,id=xfer,path="$RUN/transfer.raw" -serial chardev:xfer \
    </dev/null >"$RUN/qemu.log" 2>&1 || rc=$?
T_BOOT=$(elapsed "$TB")

NEW=$OUTDIR.new.$$
rm -rf "$NEW" && mkdir -p "$NEW"
tr -d '\r' < "$RUN/console.raw" > "$NEW/console.log" 2>/dev/null || true
if [ "$rc" != 0 ]; then
    cp "$RUN/qemu.log" "$NEW/qemu.log"
    cp "$RUN/transfer.raw" "$NEW/transfer.log" 2>/dev/null || true
    [ "$rc" = 124 ] && die "QEMU timed out after ${QEMU_TIMEOUT}s; see $NEW/console.log"
    die "QEMU exited with $rc; see $NEW/qemu.log and $NEW/console.log"
fi
if ! python3 "$HERE/unpack-transfer.py" "$RUN/transfer.raw" "$RUN/xfer" >/dev/null ||
   ! tar -xzf "$RUN/xfer/capture.tar.gz" --no-same-owner -C "$NEW"; then
    cp "$RUN/transfer.raw" "$NEW/transfer.log" 2>/dev/null || true
    die "the guest's transfer is incomplete; see $NEW/console.log and $NEW/transfer.log"
fi
T_TOTAL=$(elapsed "$T0")
cat > "$NEW/capture.info" <<EOF
kernel_release=$KREL
cmdline=$FULL_CMDLINE
elapsed_after_tools=$T_TOOLS
elapsed_after_debs=$T_DEBS
elapsed_after_extract=$T_EXTRACT
elapsed_after_module=$T_MODULE
elapsed_after_initrd=$T_INITRD
seconds_boot=$T_BOOT
seconds_total=$T_TOTAL
EOF
rm -rf "$OUTDIR" && mv "$NEW" "$OUTDIR"
log "done in ${T_TOTAL}s (boot ${T_BOOT}s): $OUTDIR"
