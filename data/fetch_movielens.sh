#!/usr/bin/env bash
# Downloads a MovieLens data set from GroupLens, checks its MD5 sum and unpacks it into
# data/NAME (next to this script unless --dest is given). The data is never shipped with
# vae_gpu: see data/README.md for the licence terms.
#
#   data/fetch_movielens.sh [--md5 SUM] [--dest DIR] NAME
#   NAME: ml-100k | ml-1m | ml-10m | ml-latest-small | ml-20m | ml-25m
#
# Environment:
#   VAE_MOVIELENS_BASE_URL  base URL instead of https://files.grouplens.org/datasets/movielens
#                           (file:// works too: used by the offline tests)
#   VAE_MOVIELENS_SKIP_MD5=1  skip the checksum (testing only)
set -euo pipefail

die() {
  echo "fetch_movielens.sh: error: $*" >&2
  exit 1
}
usage() {  # status 0 (--help: to stdout) or 2 (a mistake: to stderr)
  if [[ "${1:-2}" == 0 ]]; then
    sed -n '6,12p' "$0" | sed 's/^# \{0,1\}//'
  else
    sed -n '6,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  fi
  exit "${1:-2}"
}

expected_md5=""
dest=""
name=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --md5) [[ $# -ge 2 ]] || usage; expected_md5="$2"; shift 2 ;;
    --dest) [[ $# -ge 2 ]] || usage; dest="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    -*) echo "fetch_movielens.sh: unknown option $1" >&2; usage ;;
    *) [[ -z "$name" ]] || usage; name="$1"; shift ;;
  esac
done
[[ -n "$name" ]] || usage

# Checksums of the official zips. Only sums known for certain are embedded; for the others
# the .md5 file GroupLens publishes next to each zip (NAME.zip.md5) is fetched and used.
# top: the zip's top-level folder (ml-10m.zip holds ml-10M100K/); it is unpacked as data/NAME.
top="$name"
case "$name" in
  ml-100k) known_md5="0e33842e24a9c977be4e0107933c0723" ;;
  ml-1m) known_md5="c4d9eecfca2ab87c1945afe126590906" ;;
  ml-10m) known_md5=""; top="ml-10M100K" ;;
  ml-latest-small | ml-20m | ml-25m) known_md5="" ;;
  *) die "unknown data set '$name' (expected ml-100k, ml-1m, ml-10m, ml-latest-small, ml-20m or ml-25m)" ;;
esac

base_url="${VAE_MOVIELENS_BASE_URL:-https://files.grouplens.org/datasets/movielens}"
base_url="${base_url%/}"
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${dest:-$script_dir}"
made_dest=""  # the highest folder of --dest this run creates
d="$dest"
while [[ ! -e "$d" ]]; do made_dest="$d"; d="$(dirname "$d")"; done
mkdir -p "$dest" || die "cannot create $dest"
dest="$(cd "$dest" && pwd)"
[[ -z "$made_dest" ]] || made_dest="$(cd "$made_dest" && pwd)"
target="$dest/$name"

if [[ -e "$target" ]]; then
  echo "$target already exists; remove it to fetch $name again"
  exit 0
fi

# Work inside dest so the final move is a rename on one file system; the trap removes the
# work folder on every exit, so a failure never leaves a half-unpacked data set behind.
work="$(mktemp -d "$dest/.fetch-$name.XXXXXX")" || die "cannot create a temporary folder in $dest"
# The --dest folders this run created go again when nothing landed in them.
remove_made_dest() {
  [[ -n "$made_dest" ]] || return 0
  local d="$dest"
  while rmdir "$d" 2>/dev/null && [[ "$d" != "$made_dest" ]]; do d="$(dirname "$d")"; done
  return 0
}
trap 'rm -rf "$work"; remove_made_dest' EXIT

download() {  # url file
  if command -v curl >/dev/null 2>&1; then
    # curl prints its error once per try: show each distinct line once.
    local rc=0
    curl -fsSL --retry 2 -o "$2" "$1" 2>"$work/curl.err" || rc=$?
    awk '!seen[$0]++' "$work/curl.err" >&2
    return "$rc"
  elif command -v wget >/dev/null 2>&1 && [[ "$1" != file://* ]]; then
    wget -q -O "$2" "$1"
  else
    die "need curl (or wget for http/https URLs) to download $1"
  fi
}

md5_of() {
  if command -v md5sum >/dev/null 2>&1; then
    md5sum "$1" | cut -d' ' -f1
  elif command -v md5 >/dev/null 2>&1; then
    md5 -q "$1"
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c 'import hashlib,sys; print(hashlib.md5(open(sys.argv[1],"rb").read()).hexdigest())' "$1"
  else
    die "need md5sum, md5 or python3 to verify the download"
  fi
}

zip_url="$base_url/$name.zip"
echo "downloading $zip_url"
download "$zip_url" "$work/$name.zip" || die "download of $zip_url failed"

if [[ "${VAE_MOVIELENS_SKIP_MD5:-0}" == "1" ]]; then
  echo "warning: VAE_MOVIELENS_SKIP_MD5=1: not verifying the checksum" >&2
else
  if [[ -z "$expected_md5" ]]; then expected_md5="$known_md5"; fi
  if [[ -z "$expected_md5" ]]; then
    download "$zip_url.md5" "$work/$name.zip.md5" ||
      die "no embedded checksum for $name and $zip_url.md5 could not be fetched (pass --md5 SUM)"
    # Either "SUM  file" or "MD5 (file) = SUM": take the 32-hex-digit word.
    expected_md5="$(grep -oiE '\b[0-9a-f]{32}\b' "$work/$name.zip.md5" | head -n1 || true)"
    [[ -n "$expected_md5" ]] || die "$zip_url.md5 holds no MD5 sum"
  fi
  actual_md5="$(md5_of "$work/$name.zip")"
  expected_lc="$(echo "$expected_md5" | tr 'A-F' 'a-f')"
  if [[ "$actual_md5" != "$expected_lc" ]]; then
    die "checksum mismatch for $name.zip: expected $expected_lc, got $actual_md5 (corrupt or changed download; nothing was unpacked)"
  fi
  echo "checksum OK ($actual_md5)"
fi

mkdir "$work/unpacked"
if command -v unzip >/dev/null 2>&1; then
  unzip -q "$work/$name.zip" -d "$work/unpacked" || die "cannot unpack $name.zip"
elif command -v python3 >/dev/null 2>&1; then
  python3 -m zipfile -e "$work/$name.zip" "$work/unpacked" || die "cannot unpack $name.zip"
else
  die "need unzip or python3 to unpack $name.zip"
fi

# The official zips hold one top-level folder, named like the data set but for ml-10m's.
[[ -d "$work/unpacked/$top" ]] || die "$name.zip has no top-level folder '$top'"
mv "$work/unpacked/$top" "$target" || die "cannot move the data set to $target"
echo "unpacked $name into $target"
