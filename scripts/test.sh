#!/usr/bin/env bash
# Builds calib and runs every test, twice: an optimised build, then one under
# AddressSanitizer and UndefinedBehaviorSanitizer; then builds the libFuzzer targets
# (clang), replays their seed corpus and fuzzes each for FUZZ_SECONDS (default 60).
# Installs the Debian packages first.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/install-deps.sh

# The proto must keep every name of the contract (when the design folder is beside us).
if [ -f ../shared/tools/check_contract.py ]; then
  /usr/bin/python3 ../shared/tools/check_contract.py "$root"
fi

echo "== release build and tests"
bash scripts/build.sh "$root/build"
ctest --test-dir "$root/build" --output-on-failure

echo "== sanitizer build (address, undefined) and tests"
bash scripts/build.sh "$root/build-asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCALIB_SANITIZE=ON
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir "$root/build-asan" --output-on-failure

echo "== fuzz build (clang, libFuzzer, address, undefined): corpus, then ${FUZZ_SECONDS:-60} s"
bash scripts/build.sh "$root/build-fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ -DCALIB_FUZZ=ON
ctest --test-dir "$root/build-fuzz" --output-on-failure
# New inputs go to the first directory, a scratch one; the committed corpus is only read.
# An input runs for seconds at most (the slowest seen: 4 s of CPU, smooth ECE at a tiny
# sigma under ASan); one still running after 60 s counts as a hang and fails the run.
rm -rf "$root/build-fuzz/corpus" && mkdir -p "$root/build-fuzz/corpus"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  "$root/build-fuzz/tests/fuzz/evaluate_request_fuzzer" \
  -max_total_time="${FUZZ_SECONDS:-60}" -rss_limit_mb=2048 -timeout=60 -print_final_stats=1 \
  -artifact_prefix="$root/build-fuzz/" "$root/build-fuzz/corpus" tests/fuzz/corpus
