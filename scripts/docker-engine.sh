#!/usr/bin/env bash
# Makes a Docker engine and the conformance suite's Debian base image available on a fresh Debian 12
# machine, without any image registry:
#   - installs docker.io and debootstrap when missing;
#   - starts dockerd with no default bridge and no iptables (containers use `none`, `host` or
#     `container:<id>` networking, and the transparent cells an internal network of the suite's own with
#     no host address on its bridge, so the engine needs neither) unless an engine already answers;
#   - builds the base image `sidecar-conformance/debian-base:bookworm` with debootstrap when missing.
# Safe to run repeatedly; each step is skipped when its result is already there. Needs root.
set -euo pipefail

BASE_IMAGE=${CONFORMANCE_BASE_IMAGE:-sidecar-conformance/debian-base:bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/sidecar-dockerd.log}

log() { printf '==> %s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then
    echo "$0: needs root (it installs packages, starts dockerd and runs debootstrap)" >&2
    exit 1
fi

packages=()
command -v dockerd >/dev/null 2>&1 || packages+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || packages+=(debootstrap)
if ((${#packages[@]})); then
    log "installing ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

# A pid file left by an engine that is gone (a machine restored from a snapshot taken while dockerd ran,
# or a killed engine) makes dockerd refuse to start, and a stale one of its containerd can point at an
# unrelated process that took the pid; only a live process of the right name keeps its pid file.
clear_stale_pidfile() {
    local file=$1 name=$2 pid comm=""
    [[ -f $file ]] || return 0
    pid=$(tr -dc '0-9' <"$file")
    [[ -n $pid ]] && comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    [[ $comm == "$name" ]] && return 0
    log "removing $file left by a $name that is no longer running (pid ${pid:-none})"
    rm -f "$file"
}

if ! docker info >/dev/null 2>&1 && ! pgrep -x dockerd >/dev/null; then
    clear_stale_pidfile /var/run/docker.pid dockerd
    clear_stale_pidfile /var/run/docker/containerd/containerd.pid containerd
    log "starting dockerd (no bridge, no iptables; log: $DOCKERD_LOG)"
    # setsid: the engine outlives this script and the test run that started it.
    setsid dockerd --bridge=none --iptables=false >"$DOCKERD_LOG" 2>&1 </dev/null &
fi
if ! docker info >/dev/null 2>&1; then
    # Started above, or already starting (a dockerd process that does not answer yet).
    for _ in $(seq 1 120); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    if ! docker info >/dev/null 2>&1; then
        echo "$0: dockerd did not answer within 60 s; its log ($DOCKERD_LOG) ends with:" >&2
        tail -n 20 "$DOCKERD_LOG" >&2
        exit 1
    fi
fi

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "building $BASE_IMAGE with debootstrap from $DEBIAN_MIRROR"
    rootfs=$(mktemp -d /tmp/sidecar-debian-base.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >/dev/null
    # Image builds install packages from the same sources the host uses (with security updates), when the
    # host has deb822 sources; otherwise debootstrap's own sources.list stays.
    if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
        cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/"
        rm -f "$rootfs/etc/apt/sources.list"
    fi
    # apt settings the host needs for its mirror (a registry proxy may serve Release files apt would call
    # stale): image builds reach the same mirror, so they need them too. Names listed in
    # BASE_IMAGE_APT_CONF (space-separated, from /etc/apt/apt.conf.d; empty for none).
    for conf in ${BASE_IMAGE_APT_CONF-99artifact-registry}; do
        if [[ -f "/etc/apt/apt.conf.d/$conf" ]]; then
            cp "/etc/apt/apt.conf.d/$conf" "$rootfs/etc/apt/apt.conf.d/"
        fi
    done
    apt-get clean -o Dir="$rootfs" 2>/dev/null || true
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
fi
log "docker engine ready; base image $BASE_IMAGE present"
