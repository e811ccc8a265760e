#!/usr/bin/env bash
# Checks the Bazel build files without Bazel (no module registry is needed, so it runs offline):
#   1. buildifier, the Bazel team's formatter and linter, on every Starlark file (MODULE.bazel,
#      BUILD.bazel, BUILD, *.bzl, WORKSPACE*): any file it would reformat, or any lint warning, fails;
#   2. scripts/check_bazel_targets.py: every Cargo target has its Bazel target.
# buildifier comes from npm (@bazel/buildifier ships the real binaries) into target/tools/, once.
# Behind a TLS-inspecting proxy, point NPM_CAFILE (or npm's own cafile setting) at its CA bundle.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILDIFIER_VERSION=8.2.1
tools="target/tools/buildifier-${BUILDIFIER_VERSION}"
buildifier="${tools}/node_modules/.bin/buildifier"

if [[ ! -x "$buildifier" ]]; then
    command -v npm >/dev/null 2>&1 || {
        echo "check_bazel: npm is needed to install buildifier (apt-get install npm)" >&2
        exit 1
    }
    echo "check_bazel: installing @bazel/buildifier@${BUILDIFIER_VERSION} into ${tools}" >&2
    cafile=()
    if [[ -n "${NPM_CAFILE:-}" ]]; then
        cafile=(--cafile "$NPM_CAFILE")
    elif [[ -z "$(npm config get cafile 2>/dev/null | grep -v '^null$' || true)" \
        && -f /etc/ssl/certs/ca-certificates.crt ]]; then
        # The system bundle, which also holds a TLS-inspecting gateway's CA where one is installed.
        cafile=(--cafile /etc/ssl/certs/ca-certificates.crt)
    fi
    mkdir -p "$tools"
    npm install --prefix "$tools" --no-save --no-audit --no-fund --loglevel=error \
        "${cafile[@]}" "@bazel/buildifier@${BUILDIFIER_VERSION}" >&2
fi
installed="$("$buildifier" --version | sed -n 's/^buildifier version: *\([^ ]*\).*/\1/p')"
if [[ "$installed" != "$BUILDIFIER_VERSION" ]]; then
    echo "check_bazel: ${buildifier} is ${installed:-unknown}, expected ${BUILDIFIER_VERSION}" >&2
    exit 1
fi

# Every Starlark file of the repository, but build outputs and installed dependencies.
mapfile -t files < <(
    find . \( -path ./target -o -path ./.git -o -name node_modules -o -name 'bazel-*' \) -prune -o \
        -type f \( -name MODULE.bazel -o -name BUILD.bazel -o -name BUILD -o -name '*.bzl' \
        -o -name WORKSPACE -o -name WORKSPACE.bazel -o -name REPO.bazel \) -print | sort
)
if ((${#files[@]} == 0)); then
    echo "check_bazel: no Starlark files found" >&2
    exit 1
fi

echo "==> buildifier ${BUILDIFIER_VERSION}: format and lint, ${#files[@]} files"
# -mode=check lists files that need reformatting; -lint=warn prints each finding. Either exits non-zero.
if ! "$buildifier" -mode=check -lint=warn -warnings=all "${files[@]}"; then
    echo "check_bazel: buildifier found the problems above; \`${buildifier} -lint=fix <file>\` fixes most" >&2
    exit 1
fi

echo "==> Cargo targets against Bazel targets"
python3 scripts/check_bazel_targets.py
