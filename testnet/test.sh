#!/usr/bin/env bash
# The README's second quick-start command: installs what the tests need when it is missing
# (testnet/setup.sh), then runs every test of the workspace. Extra arguments go to `cargo test`
# (for instance a name filter after `--`).
set -euo pipefail
cd "$(dirname "$0")/.."
./testnet/setup.sh
./testnet/build-notice.sh
exec cargo test --workspace --locked "$@"
