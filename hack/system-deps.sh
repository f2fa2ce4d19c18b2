#!/usr/bin/env bash
# ffmpeg, ffprobe and espeak-ng, which the reference stages run, from Debian's
# packages: installed when missing (as root), otherwise we say what to run.
set -euo pipefail
packages=(ffmpeg espeak-ng)
missing=()
for tool in ffmpeg ffprobe espeak-ng; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${packages[*]} (missing: ${missing[*]})"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
else
  echo "missing ${missing[*]}: install them, e.g. sudo apt-get install ${packages[*]}" >&2
  exit 1
fi
