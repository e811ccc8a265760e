#!/usr/bin/env bash
# A bounded libFuzzer run of every fuzz target (docs/fuzzing.md): builds fuzz/cargo-fuzz with cargo-fuzz,
# then runs each target for SECONDS over a scratch copy of its committed corpus, one target after another.
# Fails when any target finds a crash, a hang or a broken check; the input that did it is kept under
# target/fuzz/artifacts/<target>/ with the command that replays it. Prints executions per target.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   SECONDS  per target (default 20); TARGET  only these targets (default: all of fuzz/cargo-fuzz/fuzz_targets)
# Environment:
#   FUZZ_RUNS=N          also stop each target after N executions (libFuzzer -runs)
#   FUZZ_SANITIZER=NAME  address, leak, memory, thread or none (default none: the sidecar's own code forbids
#                        unsafe, so a sanitizer only watches dependencies, and it slows every execution)
#   FUZZ_KEEP_CORPUS=DIR keep each target's grown corpus in DIR/<target> (for a long run by hand); by
#                        default the copy is scratch, and the committed corpus never grows from a run
#
# The only toolchain here is stable, and cargo-fuzz needs nightly compiler flags (-Z sanitizer options and
# the sancov pass): RUSTC_BOOTSTRAP=1 lets stable rustc accept them. It applies to this script's builds
# only, in their own target directory, never to the workspace's normal builds.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
seconds="${1:-20}"
shift || true
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "fuzz.sh: SECONDS must be a positive number of seconds, got \"$seconds\"" >&2
    exit 2
fi
sanitizer="${FUZZ_SANITIZER:-none}"
fuzz_dir=fuzz/cargo-fuzz
target_dir=target/cargo-fuzz
work=target/fuzz
binaries="$target_dir/x86_64-unknown-linux-gnu/release"

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(find "$fuzz_dir/fuzz_targets" -name '*.rs' -printf '%f\n' | sed 's/\.rs$//' | sort)
fi
for target in "${targets[@]}"; do
    if [[ ! -f "$fuzz_dir/fuzz_targets/$target.rs" ]]; then
        echo "fuzz.sh: no fuzz target \"$target\" in $fuzz_dir/fuzz_targets" >&2
        exit 2
    fi
done

export RUSTC_BOOTSTRAP=1
# cargo-fuzz has no --locked: check here that the committed lock file needs no change.
if ! cargo metadata --locked --format-version 1 --manifest-path "$fuzz_dir/Cargo.toml" >/dev/null; then
    echo "fuzz.sh: $fuzz_dir/Cargo.lock is out of date (a dependency of the workspace changed). Refresh it from" >&2
    echo "  the workspace's lock and commit it: cp Cargo.lock $fuzz_dir/ && cargo metadata --format-version 1 --manifest-path $fuzz_dir/Cargo.toml >/dev/null" >&2
    exit 1
fi
# Without a target name cargo-fuzz builds them all; with one, only it.
build_only=()
((${#targets[@]} == 1)) && build_only=("${targets[0]}")
echo "==> building ${#targets[@]} fuzz target(s) (sanitizer: $sanitizer)"
build_start=$SECONDS
# -O -a: optimised, with debug assertions and overflow checks (an overflow is a finding).
cargo fuzz build --fuzz-dir "$fuzz_dir" --target-dir "$target_dir" -O -a -s "$sanitizer" "${build_only[@]}"
echo "built in $((SECONDS - build_start)) s"

# Scratch corpora go; findings of earlier runs stay (only this run's are reported); logs are per run.
rm -rf "$work/corpus"
mkdir -p "$work/corpus" "$work/artifacts" "$work/logs"
# Targets run side by side, one per core (FUZZ_JOBS to change): each is one libFuzzer process on one core,
# so on 2 cores the run takes half the wall time. Each writes its summary line and status next to its log.
fuzz_one() {
    local target=$1
    rm -f "$work/logs/$target.summary" "$work/logs/$target.status"
    local corpus="$work/corpus/$target"
    local artifacts="$work/artifacts/$target"
    local log="$work/logs/$target.log"
    if [[ -n "${FUZZ_KEEP_CORPUS:-}" ]]; then
        corpus="$FUZZ_KEEP_CORPUS/$target"
    fi
    mkdir -p "$corpus" "$artifacts"
    cp -n fuzz/corpus/"$target"/* "$corpus"/
    touch "$work/logs/$target.start"
    local limits=(-max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1)
    [[ -n "${FUZZ_RUNS:-}" ]] && limits+=(-runs="$FUZZ_RUNS")
    echo "==> $target: ${seconds} s"
    local status=0
    "$binaries/$target" "${limits[@]}" -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1 || status=$?
    local executions rate units result
    executions="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    units="$(find "$corpus" -type f | wc -l)"
    if ((status == 0)); then
        result=ok
    else
        result="FAILED (exit $status)"
        # The finding: libFuzzer's report (the panic and its input) and how to replay it.
        grep -E "panicked at|^==[0-9]+==|SUMMARY|Test unit written|^Base64" "$log" | head -20 >&2 || true
        find "$artifacts" -type f -newer "$work/logs/$target.start" |
            while read -r artifact; do echo "replay: $binaries/$target $artifact" >&2; done
    fi
    printf '%-20s %12s execs %8s/s %6s corpus  %s\n' "$target" "${executions:-?}" "${rate:-?}" "$units" "$result" \
        >"$work/logs/$target.summary"
    echo "$status" >"$work/logs/$target.status"
}

jobs_at_once="${FUZZ_JOBS:-$(nproc)}"
for target in "${targets[@]}"; do
    while (($(jobs -rp | wc -l) >= jobs_at_once)); do
        wait -n || true
    done
    fuzz_one "$target" &
done
wait

summary=()
failed=()
for target in "${targets[@]}"; do
    summary+=("$(cat "$work/logs/$target.summary" 2>/dev/null || echo "$target: no result (see $work/logs/$target.log)")")
    [[ "$(cat "$work/logs/$target.status" 2>/dev/null)" == 0 ]] || failed+=("$target")
done

echo
echo "==> executions per target (${seconds} s each; logs in $work/logs)"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
    echo "fuzz.sh: findings in ${failed[*]}; inputs under $work/artifacts/ (docs/fuzzing.md: turning a finding into a regression test)" >&2
    exit 1
fi
