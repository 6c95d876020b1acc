#!/usr/bin/env bash
# The README's first quick-start command: install what is missing (testnet/setup.sh), build
# chainiac (the same build as `cargo test --workspace`, so the second command reuses it), then run
# `chainiac testnet demo`: a local 4-node testnet (one node also a build verifier, the timeline
# anchored in anvil) and the whole publish-witness-rebuild-verify-fetch story. Extra arguments go
# to the demo (`--keep` leaves the testnet running, `--dir DIR` chooses where it lives).
set -euo pipefail
cd "$(dirname "$0")/.."

./testnet/setup.sh --demo
./testnet/build-notice.sh
echo "building chainiac..." >&2
SECONDS=0
cargo test --workspace --locked --no-run
echo "built in ${SECONDS} s" >&2
target_dir="${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')}"
exec "$target_dir/debug/chainiac" testnet demo "$@"
