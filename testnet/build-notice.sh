#!/usr/bin/env bash
# Says, before a build, whether it is the first one (and why that one is long).
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"
if ! ls "$target_dir"/debug/build/librocksdb-sys-*/out/librocksdb.a >/dev/null 2>&1; then
    cat >&2 <<'MSG'
building chainiac for the first time: about 25 minutes on 2 cores (measured: docs/benchmarks.md), most of it RocksDB's C++
(compiled from source by librocksdb-sys); later builds reuse it and take a minute or two.
MSG
fi
