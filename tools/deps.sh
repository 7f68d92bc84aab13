#!/usr/bin/env bash
# Checks (and, as root, installs) everything `make run` and `make test` need.
# Nothing is assumed to be preinstalled except a Rust toolchain (cargo with
# rustfmt and clippy), which Debian's packages do not provide in a usable
# version: without it this script says how to get one and stops.
set -u

need_pkgs=()
check() { # check COMMAND DEBIAN-PACKAGE
    command -v "$1" >/dev/null 2>&1 || need_pkgs+=("$2")
}
check gcc gcc
check cpp cpp
check make make
check ld binutils
check objcopy binutils
check patch patch
check git git
check xmllint libxml2-utils
check python3 python3
check qemu-system-x86_64 qemu-system-x86
# The kernel's generators run in a private venv (kernel/build.py makes it).
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    need_pkgs+=(python3-venv)
fi

if [ ${#need_pkgs[@]} -gt 0 ]; then
    # unique, in order
    pkgs=$(printf '%s\n' "${need_pkgs[@]}" | awk '!seen[$0]++' | tr '\n' ' ')
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "deps: installing: $pkgs"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends $pkgs >/dev/null || {
            echo "deps: error: apt-get install $pkgs failed" >&2
            exit 1
        }
    else
        echo "deps: error: missing packages. Run as root:" >&2
        echo "    apt-get update && apt-get install -y $pkgs" >&2
        exit 1
    fi
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "deps: error: cargo is not installed. Install a stable Rust toolchain with rustup" >&2
    echo "    (https://rustup.rs), then run this again." >&2
    exit 1
fi
for comp in rustfmt clippy; do
    if ! cargo "${comp/rustfmt/fmt}" --version >/dev/null 2>&1; then
        if command -v rustup >/dev/null 2>&1 && rustup component add "$comp" >/dev/null 2>&1; then
            echo "deps: added the $comp component"
        else
            echo "deps: error: cargo ${comp/rustfmt/fmt} is missing: run \`rustup component add $comp\`" >&2
            exit 1
        fi
    fi
done
exit 0
