#!/usr/bin/env bash
# The main job, end to end: builds calib, starts calibd on a free loopback port,
# evaluates a real model's outputs through it with temperature scaling, prints the
# report, and stops the server.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/install-deps.sh
bash scripts/build.sh "$root/build" >/dev/null

log="$(mktemp)"
./build/calibd --listen 127.0.0.1:0 >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do
  address=$(sed -n 's/^calibd listening on //p' "$log")
  [ -n "$address" ] && break
  sleep 0.1
done
[ -n "$address" ] || { cat "$log" >&2; echo "demo: calibd did not start" >&2; exit 1; }

echo "calibd is serving on $address: $(./build/calib health --server "$address")"
echo
echo "\$ calib eval --server $address --logits examples/digits_logits.npy \\"
echo "      --labels examples/digits_labels.npy --fit-temperature --top-k 1,2"
./build/calib eval --server "$address" --logits examples/digits_logits.npy \
  --labels examples/digits_labels.npy --fit-temperature --top-k 1,2
