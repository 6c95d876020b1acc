#!/usr/bin/env bash
# The release story with the command line alone, step by step: read it to learn the commands,
# copy it to script your own testnet. Usage: testnet/scenario.sh [DIR] (default: ./scenario-data).
# Needs the `chainiac` binary on PATH or in CHAINIAC (built by testnet/demo.sh or cargo build).
set -euo pipefail
dir="$(realpath -m "${1:-scenario-data}")"
chainiac="${CHAINIAC:-chainiac}"
run() { echo "+ chainiac $*" >&2; "$chainiac" "$@"; }

mkdir -p "$dir/files"
run testnet up --nodes 4 --dir "$dir/net" --epoch-seconds 2
trap 'run testnet down --dir "$dir/net"' EXIT
nodes=$(sed -n 's/.*"api": "\(.*\)".*/\1/p' "$dir/net/testnet.json" | paste -sd, -)
peer=$(sed -n 's/.*"p2p": "\(.*\)".*/\1/p' "$dir/net/testnet.json" | head -1)

# A project with three developers; releases need two signatures. Writes to a node's API need
# its token: the testnet's nodes share DIR/api.token (recorded in project.json from here on).
run project create hello --dir "$dir/project" --developers 3 --threshold 2 \
    --roster "$dir/net/roster.json" --node "$nodes" --api-token "$dir/net/api.token" \
    | tee "$dir/project.txt"
release_chain=$(sed -n 's/^ *release chain *\([0-9a-f]*\).*/\1/p' "$dir/project.txt")

# Release 1.0.0: prepare, sign offline by two developers, publish.
echo 'int main(void) { return 0; }' > "$dir/files/hello.c"
tar -C "$dir/files" -cf "$dir/files/hello-1.0.0.tar" hello.c
printf 'pretend this is a binary\n' > "$dir/files/hello"
run release create --project-dir "$dir/project" --version 1.0.0 \
    --source "$dir/files/hello-1.0.0.tar" --binary "linux-x86_64=$dir/files/hello" \
    --script 'cc -o hello hello.c' --out "$dir/release-1.0.0.json"
run release sign --bundle "$dir/release-1.0.0.json" --project-dir "$dir/project" --key dev-1
run release sign --bundle "$dir/release-1.0.0.json" --project-dir "$dir/project" --key dev-2
run release publish --bundle "$dir/release-1.0.0.json" --project-dir "$dir/project"

# Rotate developer 3's key (signed by developers 1 and 2).
run project policy --dir "$dir/project" --rotate-developer 3
run project show --dir "$dir/project"

# A light client pins the release chain, syncs, verifies and fetches the binary.
run client --dir "$dir/client" --peer "$peer" follow "$release_chain"
# The project's policy names the testnet's timeline (project create --timeline auto), so the
# client pins it and accepts a release once a timeline block commits to it: within an epoch.
for attempt in $(seq 30); do
    if run client --dir "$dir/client" sync | tee "$dir/sync.txt" && grep -q 'release 1.0.0' "$dir/sync.txt"; then
        break
    fi
    [ "$attempt" -lt 30 ] || { echo "the timeline did not commit to release 1.0.0 within 30 s" >&2; exit 1; }
    sleep 1
done
run client --dir "$dir/client" verify
run client --dir "$dir/client" fetch hello --out "$dir/hello.fetched"
cmp "$dir/files/hello" "$dir/hello.fetched" && echo "fetched binary matches the published one"
run testnet status --dir "$dir/net"
