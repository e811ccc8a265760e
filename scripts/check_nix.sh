#!/usr/bin/env bash
# Checks flake.nix without nixpkgs. Where nixpkgs can be fetched, `nix flake check` is the real test; here
# it cannot, so this parses every Nix file, evaluates the flake's `outputs` against stand-ins for its inputs
# (nix/check/stub-*.nix) and asserts what the outputs must be (nix/check/eval.nix), compares the tests the
# Nix check skips with proxy/tests/, then proves the check has teeth: it breaks copies of the flake in known
# ways (a misspelt output, a wrong image user, a missing dev tool, ...) and expects each to fail.
#
# Needs only Nix's evaluator (Debian 12's nix-bin, Nix 2.8, is enough; installed when missing) and writes
# nothing to a Nix store. Usage: scripts/check_nix.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

log() { printf '\n==> %s\n' "$*"; }
die() {
    printf 'check_nix: %s\n' "$*" >&2
    exit 1
}

# The evaluator with no store: nothing is built, copied or fetched.
nix_eval() { nix-instantiate --store dummy:// "$@"; }

ensure_nix() {
    command -v nix-instantiate >/dev/null 2>&1 && return
    log "installing Debian's nix-bin (Nix's evaluator)"
    local sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq nix-bin >/dev/null
    command -v nix-instantiate >/dev/null 2>&1 || die "nix-instantiate still missing after installing nix-bin"
}

# The #[test] functions of the given Rust files, one name per line.
test_functions() {
    awk '
        /#\[(tokio::)?test|#\[rstest/ { pending = 1; next }
        pending && match($0, /fn [A-Za-z0-9_]+/) { print substr($0, RSTART + 3, RLENGTH - 3); pending = 0 }
    ' "$@"
}

# Every check against the flake in directory $1. Prints what is wrong and returns non-zero on the first
# failing step; on success prints the evaluation's summary.
validate() {
    local dir=$1 file

    local nix_files=("$dir/flake.nix")
    while IFS= read -r file; do nix_files+=("$file"); done < <(find "$dir/nix" -name '*.nix' | sort)
    for file in "${nix_files[@]}"; do
        nix_eval --parse "$file" >/dev/null || {
            echo "does not parse: ${file#"$dir"/}"
            return 1
        }
    done

    # `nix flake check` evaluates in pure mode: no environment, no clock, no NIX_PATH, no unpinned
    # fetches. The stand-ins cannot enforce that, so look for them (comments aside) in what the flake imports.
    local impure
    impure=$(grep -nE 'builtins\.(currentSystem|currentTime|getEnv|fetchTarball|fetchGit|fetchurl)|<[A-Za-z][A-Za-z0-9_.+-]*>' \
        "$dir/flake.nix" "$dir"/nix/*.nix | grep -vE '^[^:]+:[0-9]+:[[:space:]]*#' || true)
    if [[ -n $impure ]]; then
        echo "impure in pure evaluation (flake.nix, nix/*.nix):"
        echo "$impure"
        return 1
    fi

    # run.nix prints its summary (or the failures) on stderr and returns the skipped tests' names.
    local skipped
    if ! skipped=$(nix_eval --eval --strict --json "$dir/nix/check/run.nix" --argstr root "$dir" 2>"$scratch/eval.err"); then
        cat "$scratch/eval.err"
        return 1
    fi
    sed 's/^trace: //' "$scratch/eval.err"
    skipped=$(tr -d '[]"' <<<"$skipped" | tr ',' '\n' | sed '/^$/d' | sort)

    # checks.cargo-test skips exactly the tests that need root: those of proxy/tests/*_netns.rs.
    local netns_files=("$dir"/proxy/tests/*_netns.rs)
    [[ -e ${netns_files[0]} ]] || {
        echo "no proxy/tests/*_netns.rs: where did the root-only tests go?"
        return 1
    }
    local root_only missing stale
    root_only=$(test_functions "${netns_files[@]}" | sort -u)
    missing=$(comm -23 <(echo "$root_only") <(echo "$skipped"))
    stale=$(comm -13 <(echo "$root_only") <(echo "$skipped"))
    if [[ -n $missing ]]; then
        echo "- root-only tests in proxy/tests/*_netns.rs that checks.cargo-test does not skip (nix/checks.nix rootOnlyTests):"
        sed 's/^/    /' <<<"$missing"
    fi
    if [[ -n $stale ]]; then
        echo "- checks.cargo-test skips tests that proxy/tests/*_netns.rs does not have (renamed?):"
        sed 's/^/    /' <<<"$stale"
    fi
    [[ -z $missing && -z $stale ]] || return 1
    echo "  skipped tests = the #[test]s of ${netns_files[*]#"$dir"/}"
}

# A copy of the checkout in which flake.nix and nix/ can be broken; everything else is linked.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
copy_checkout() {
    local into=$1 entry
    rm -rf "$into"
    mkdir -p "$into"
    shopt -s nullglob
    for entry in "$repo"/* "$repo"/.[!.]*; do
        case ${entry##*/} in
        flake.nix | nix | target | .git) ;;
        *) ln -s "$entry" "$into/${entry##*/}" ;;
        esac
    done
    cp "$repo/flake.nix" "$into/"
    cp -R "$repo/nix" "$into/"
}

# expect_caught WHAT FILE SED-ARGS...: applies the sed edit to FILE of a fresh copy and expects validate to
# fail on it.
caught=0
expect_caught() {
    local what=$1 file=$2
    shift 2
    local copy=$scratch/mutant
    copy_checkout "$copy"
    sed -i "$@" "$copy/$file"
    if cmp -s "$repo/$file" "$copy/$file"; then
        die "self-test '$what': the edit ($*) changed nothing in $file; update the self-test"
    fi
    if validate "$copy" >"$scratch/log" 2>&1; then
        cat "$scratch/log" >&2
        die "self-test '$what': the check passed a broken flake ($file: sed $*)"
    fi
    local why
    why=$(grep -m1 -E '^[[:space:]]*- ' "$scratch/log" || grep -m1 -E 'error:|does not parse|impure' "$scratch/log" || true)
    why=$(sed -E 's/^[[:space:]]+//' <<<"$why" | cut -c1-160)
    printf '  caught: %-44s %s\n' "$what" "${why:-$(head -n1 "$scratch/log")}"
    caught=$((caught + 1))
}

ensure_nix
log "Nix: $(nix-instantiate --version)"

log "parse, evaluate against the stand-ins, assert"
validate "$repo" || die "flake.nix fails its offline check (above)"

log "self-test: broken copies of the flake must fail"
expect_caught "output misspelt (packges)" flake.nix -e 's/^      packages = forAllSystems/      packges = forAllSystems/'
expect_caught "package renamed" flake.nix -e 's/sidecar-proxy-image = pkgs.callPackage/sidecar-proxy-img = pkgs.callPackage/'
expect_caught "aarch64-linux dropped" flake.nix -e 's/"aarch64-linux"/"aarch64-darwin"/'
expect_caught "checks via callPackage (adds override)" flake.nix -e 's|checks = import ./nix/checks.nix|checks = pkgs.callPackage ./nix/checks.nix|'
expect_caught "nixpkgs' rustc instead of the pin" flake.nix -e 's/cargo = toolchain;/cargo = pkgs.cargo;/' -e 's/rustc = toolchain;/rustc = pkgs.rustc;/'
expect_caught "syntax error" flake.nix -e 's/rustVersion = "\([0-9.]*\)";/rustVersion = "\1"/'
expect_caught "impure builtins.currentSystem" flake.nix -e 's/bySystem = nixpkgs.lib.genAttrs systems perSystem;/bySystem = nixpkgs.lib.genAttrs [ builtins.currentSystem ] perSystem;/'
expect_caught "Cargo.lock path misspelt" nix/package.nix -e 's|cargoLock.lockFile = ../Cargo.lock;|cargoLock.lockFile = ../Cargo.lck;|'
expect_caught "a workspace member left out of src" flake.nix -e '/^              \.\/soak$/d'
expect_caught "package runs its tests" nix/package.nix -e 's/doCheck = false;/doCheck = true;/'
expect_caught "proxy image user 2103" nix/proxy-image.nix -e 's/"2102:2102"/"2103:2102"/'
expect_caught "admin port 4191 not exposed" nix/proxy-image.nix -e '/"4191\/tcp" = { };/d'
expect_caught "injector's serve moved into Entrypoint" nix/injector-image.nix -e 's|Entrypoint = \[ (lib.getExe sidecar-injector) \];|Entrypoint = [ (lib.getExe sidecar-injector) "serve" ];|' -e '/Cmd = \[ "serve" \];/d'
expect_caught "python without pysocks" nix/shell.nix -e 's/ps.pysocks/ps.requests/'
expect_caught "bazelisk left out of the shell" nix/shell.nix -e '/^    bazelisk$/d'
expect_caught "a package nixpkgs does not have" nix/shell.nix -e 's/debootstrap/debootstrapp/g'
expect_caught "root-only test renamed" nix/checks.nix -e 's/"legacy_backend_converges_and_auto_stays_on_it"/"legacy_backend_converges"/'
expect_caught "conformance matrix not excluded" nix/checks.nix -e '/cargoTestFlags = \[/,/\];/{/"--exclude"/d;/"sidecar-conformance"/d}'
log "all $caught broken copies failed, as they must"

# Not a failure: the Dockerfiles are other people's files, but the two builds should use one toolchain.
rust_version=$(sed -nE 's/^[[:space:]]*rustVersion = "([0-9.]+)";.*/\1/p' flake.nix)
docker_rust=$(sed -nE 's/^ARG RUST_IMAGE=rust:([0-9.]+).*/\1/p' proxy/Dockerfile 2>/dev/null | head -n1)
if [[ -n $docker_rust && ${rust_version%.*} != "$docker_rust" && $rust_version != "$docker_rust" ]]; then
    printf '\nnote: flake.nix pins Rust %s, proxy/Dockerfile builds with rust:%s\n' "$rust_version" "$docker_rust"
fi

log "flake.nix: offline check passed (parse, evaluation, assertions, skip list, self-test)"
