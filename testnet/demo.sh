#!/usr/bin/env bash
# The README's first quick-start command: build chainiac (the same build as `cargo test
# --workspace`, so the second command reuses it), then run `chainiac testnet demo`: a local
# 4-node testnet and the whole publish-witness-verify-fetch story. Extra arguments go to the demo
# (`--keep` leaves the testnet running, `--dir DIR` chooses where it lives).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "building chainiac (the first build takes a while: RocksDB is compiled from source)..." >&2
cargo test --workspace --locked --no-run
target_dir="${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')}"
exec "$target_dir/debug/chainiac" testnet demo "$@"
