#!/bin/busybox sh
# /init of the QEMU guest that kernel/boot-kfence.sh boots (busybox initramfs).
#
# It drives the kernel's KFENCE with plain shell writes, the way ufence does on
# a real machine (sysfs parameters, per-cache skip_kfence), loads the test
# module kq_kfence.ko (every KFENCE bug type plus leaks), and copies what
# ufence reads into /out, a tree shaped like the real one:
#   /out/sys/module/kfence/parameters/*     /out/sys/kernel/debug/kfence/{stats,objects}
#   /out/sys/kernel/slab/<cache>/skip_kfence  /out/dmesg.txt  /out/proc/...
#   /out/states/<NN-stage>/...   the same files before/after each control step
#   /out/control.log             every write done, its exit status and the value read back
# Then it sends /out as one gzipped tar over the second serial port (ttyS1; the
# kernel console is ttyS0, so kernel messages never mix into the transfer), as
# base64 between "=== KQ-BEGIN capture.tar.gz" and "=== KQ-END capture.tar.gz
# size sha256", then "=== KQ-DONE 1", and powers off.

/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /tmp /out
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug

# Whatever goes wrong below, the guest powers off (the host's timeout is the backstop).
(sleep 240; echo "kq-init: watchdog fired: powering off"; poweroff -f) &

OUT=/out
P=/sys/module/kfence/parameters
D=/sys/kernel/debug/kfence
SLAB=/sys/kernel/slab
PROBE=/sys/module/kq_kfence/parameters/probe
CACHES="kmalloc-8 kmalloc-16 kmalloc-32 kmalloc-64 kmalloc-96 kmalloc-128 kmalloc-192 kmalloc-256 kmalloc-512 kmalloc-1k kq_cache"

log() {
    echo "kq-init: $*"
    echo "$*" >> $OUT/control.log
}

# val FILE: a one-line sysfs file's value, read with shell builtins only
# (every fork costs tens of milliseconds under TCG, and a stage copies dozens)
val() {
    v=
    read -r v < "$1" 2>/dev/null
    echo "$v"
}

# capture DIR [objects]: the KFENCE-related files of this kernel into DIR
capture() {
    dirs="$1$P $1$D"
    for c in $CACHES; do dirs="$dirs $1$SLAB/$c"; done
    # shellcheck disable=SC2086 # one word per directory
    mkdir -p $dirs
    for f in "$P"/*; do val "$f" > "$1$f"; done
    if [ -d $D ]; then
        cat $D/stats > "$1$D/stats"
        [ "$2" = objects ] && cat $D/objects > "$1$D/objects"
    else
        rmdir "$1$D"
    fi
    for c in $CACHES; do
        if [ -e "$SLAB/$c/skip_kfence" ]; then
            val "$SLAB/$c/skip_kfence" > "$1$SLAB/$c/skip_kfence"
        else
            rmdir "$1$SLAB/$c"
        fi
    done
}

# stage NAME [objects]: a before/after copy under states/NAME
stage() {
    capture "$OUT/states/$1" "$2"
    if [ -d $D ]; then dbg=present; else dbg=absent; fi
    log "stage $1: sample_interval=$(val $P/sample_interval) debugfs-kfence=$dbg"
}

# setp FILE VALUE: write as ufence would; log exit status and the value read back
setp() {
    # shellcheck disable=SC2320 # echo's status is the write's: that is what we log
    if echo "$2" > "$1"; then rc=0; else rc=$?; fi
    log "write $1 = $2: rc=$rc, reads $(val "$1")"
}

# probe SIZE: ask the module how many of 50 allocations KFENCE guards (0 = kq_cache)
probe() {
    echo "$1" > $PROBE
    log "probe $1: $(val $PROBE)"
}

log "cmdline: $(cat /proc/cmdline)"
log "kernel: $(uname -r)"
stage 00-boot

if [ "$(val $P/sample_interval)" = 0 ]; then
    # Booted with KFENCE off (Debian's default): no debugfs dir until a late enable.
    log "kfence off at boot: $D is $([ -d $D ] && echo present || echo absent)"
    setp $P/sample_interval 100
    stage 01-late-enable
fi

setp $P/skip_covered_thresh 90
setp $P/sample_interval 0
stage 02-disabled
setp $P/sample_interval 1
stage 03-enabled

insmod /kq_kfence.ko
log "insmod kq_kfence.ko: rc=$?"
stage 04-after-module objects

# Per-cache switch: kmalloc-192 ends switched off; kq_cache is switched off and back on.
probe 192
setp $SLAB/kmalloc-192/skip_kfence 1
probe 192
stage 05-kmalloc-192-off
probe 0
setp $SLAB/kq_cache/skip_kfence 1
probe 0
stage 06-kq_cache-off
setp $SLAB/kq_cache/skip_kfence 0
probe 0
stage 07-kq_cache-on

capture $OUT objects
dmesg > $OUT/dmesg.txt
mkdir -p $OUT/proc/sys/kernel
for f in cmdline version sys/kernel/osrelease sys/kernel/tainted; do val /proc/$f > $OUT/proc/$f; done
log "captured; sending"

# One gzipped tar keeps the transfer to a handful of processes and ~40 KB of base64.
tar -c -C $OUT -f /tmp/capture.tar .
gzip -1 /tmp/capture.tar
T=/tmp/capture.tar.gz
{
    echo "=== KQ-BEGIN capture.tar.gz"
    base64 $T
    echo "=== KQ-END capture.tar.gz $(wc -c < $T) $(sha256sum $T | cut -d' ' -f1)"
    echo "=== KQ-DONE 1"
} > /dev/ttyS1
echo "kq-init: sent; powering off"
sync
poweroff -f
