#!/usr/bin/env bash
# Installs what building, testing and demonstrating chainiac needs on Debian (or Ubuntu) with
# Rust, when it is missing, and says what it installs and why:
#   - clang and libclang-dev: RocksDB's Rust bindings are generated with bindgen;
#   - a C compiler and make: RocksDB's C++ build, and the C project the verifier tests rebuild;
#   - python3: the independent test-vector check;
#   - bubblewrap: build verifiers run recipes in its sandbox;
#   - chromium and chromium-driver: the node explorer's browser test renders the page headless;
#   - openssh-client and minisign: the tests of developers' own signing keys;
#   - systemd-analyze (package systemd): the test that checks the node's systemd unit;
#   - anvil (from npm, under ~/.cache/chainiac-tools, no root needed): the local Ethereum node
#     the anchoring tests and the demo's anchoring use.
# With --demo, only what the build and the demo need (testnet/demo.sh): the compilers,
# bubblewrap for the demo's verifier node and anvil for its anchoring.
# Run as root, or as a user with sudo (it says so before using it; sudo may ask for a password);
# a user without sudo is told what to run as root. With --check it only reports.
# Used by testnet/demo.sh, testnet/test.sh and .ci/run.
set -euo pipefail

check_only=false
demo_only=false
for arg in "$@"; do
    case "$arg" in
        --check) check_only=true ;;
        # What building chainiac and running the demo need (no browser or test-only tools).
        --demo) demo_only=true ;;
        *) echo "usage: $0 [--check] [--demo]" >&2; exit 2 ;;
    esac
done

say() { printf 'setup: %s\n' "$*" >&2; }

need_apt=()
why=()
want() { need_apt+=("$1"); why+=("$1 ($2)"); }
command -v cc >/dev/null 2>&1 || want build-essential "C/C++ compiler for RocksDB"
command -v clang >/dev/null 2>&1 || want clang "bindgen for RocksDB's bindings"
libclang=false
for candidate in /usr/lib/llvm-*/lib/libclang.so* /usr/lib/*-linux-gnu/libclang*.so*; do
    [ -e "$candidate" ] && libclang=true && break
done
$libclang || want libclang-dev "bindgen for RocksDB's bindings"

command -v bwrap >/dev/null 2>&1 || want bubblewrap "the build verifiers' sandbox (the demo's verifier node)"
if ! $demo_only; then
    command -v make >/dev/null 2>&1 || want make "builds the C project of the verifier tests"
    command -v python3 >/dev/null 2>&1 || want python3 "independent test-vector check"
    command -v ssh-keygen >/dev/null 2>&1 || want openssh-client "the tests of developers' OpenSSH keys"
    command -v minisign >/dev/null 2>&1 || want minisign "the tests of developers' minisign keys"
    command -v systemd-analyze >/dev/null 2>&1 || want systemd "systemd-analyze checks the node's service unit"
    if ! command -v chromium >/dev/null 2>&1; then
        want chromium "the node explorer's browser test"
        want fonts-dejavu-core "text in the explorer's screenshots"
    fi
    command -v chromedriver >/dev/null 2>&1 || want chromium-driver "drives Chromium in the explorer's browser test"
fi

# Where anchor/src/anvil.rs looks for it (the npm package ships a prebuilt x86-64 binary).
tools="$HOME/.cache/chainiac-tools"
anvil_package="@foundry-rs/anvil-linux-amd64@1.7.1"
anvil="$tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
need_anvil=false
if [ -z "${CHAINIAC_ANVIL:-}" ] && ! command -v anvil >/dev/null 2>&1 && [ ! -x "$anvil" ]; then
    if [ "$(uname -m)" = "x86_64" ]; then
        need_anvil=true
        command -v npm >/dev/null 2>&1 || want npm "installs anvil (the local Ethereum node) from the npm registry"
    else
        say "no anvil for $(uname -m) from npm: install Foundry's anvil yourself (or set CHAINIAC_ANVIL) for anchoring"
    fi
fi

if [ "${#need_apt[@]}" -eq 0 ] && ! $need_anvil; then
    say "every prerequisite is installed"
    exit 0
fi

if [ "${#need_apt[@]}" -gt 0 ]; then
    say "missing system packages: ${why[*]}"
    if $check_only; then
        say "install them with: sudo apt-get install ${need_apt[*]}"
        exit 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        say "this is not a Debian-like system (no apt-get); install the equivalents of: ${need_apt[*]}"
        exit 1
    fi
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1; then
        say "installing them with sudo (it may ask for your password)"
        as_root=(sudo)
    else
        say "not root and no sudo: as root, run"
        say "  apt-get update && apt-get install -y ${need_apt[*]}"
        say "then run this command again"
        exit 1
    fi
    say "apt-get install ${need_apt[*]} (a minute or a few, depending on the mirror)"
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    say "installed ${need_apt[*]}"
fi

if $need_anvil; then
    if $check_only; then
        say "anvil is missing; install it with: npm install --ignore-scripts --prefix $tools $anvil_package"
        exit 1
    fi
    say "installing anvil (a local Ethereum node) from npm into $tools"
    mkdir -p "$tools"
    # A pinned version, and no install scripts: the package is the binary and nothing else.
    npm install --silent --ignore-scripts --prefix "$tools" "$anvil_package" >/dev/null
    say "installed $("$anvil" --version | head -1)"
fi
