#!/bin/sh
# Prints the Debian packages of the named sections of scripts/packages.txt, one a line.
# usage: packages.sh SECTION... (build, runtime, test). POSIX sh: it also runs in the
# Dockerfile's debian:bookworm-slim stage. Fails on a section the file does not have.
set -eu
list="$(dirname "$0")/packages.txt"
[ $# -gt 0 ] || { echo "usage: packages.sh SECTION..." >&2; exit 2; }
for want in "$@"; do
  found=0
  section=
  # One word a line matters: a package, a [section], or the start of a comment.
  while read -r word _ || [ -n "${word:-}" ]; do
    case "$word" in
      '' | '#'*) ;;
      '['*']') section="${word#[}"; section="${section%]}"
               if [ "$section" = "$want" ]; then found=1; fi ;;
      *) if [ "$section" = "$want" ]; then echo "$word"; fi ;;
    esac
  done < "$list"
  [ "$found" = 1 ] || { echo "packages.sh: no section [$want] in $list" >&2; exit 1; }
done
