#!/usr/bin/env bash
# Builds calib and runs every test, twice: an optimised build, then one under
# AddressSanitizer and UndefinedBehaviorSanitizer. Installs the Debian packages first.
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
