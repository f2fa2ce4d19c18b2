#!/usr/bin/env bash
# Debian packages the project runs, installed when missing (as root, with
# apt-get); otherwise we say what to run.
#
#   ffmpeg, ffprobe, espeak-ng     the reference stages run them (the tests and
#                                  `make demo`): missing ones fail this script
#   fonts-noto-core, -cjk,         video_gen's titles in any script (Noto files
#   libfribidi0                    at fixed paths; FriBiDi lets Pillow's libraqm
#                                  shape Arabic): stage code too, required alike
#   podman, runc, mmdebstrap,      `make images` (hack/images.sh) builds the
#   gcc, libc6-dev, binutils       images with them (gcc: the static pause
#                                  binary); it needs root anyway, so
#                                  on a machine without root their absence is
#                                  reported and does not fail this script
#   containerd, runc, the CNI      the development cluster's real node
#   plugins, iproute2              (vidop_devcluster.realnode); root only too,
#                                  so reported alike (the demo and the tests
#                                  then use the process-based local node)
set -euo pipefail
# tool=package, per group; a tool given by absolute path is a file looked for
# (a static libc, the CNI plugins: not commands on PATH).
# FriBiDi's library lives under the architecture's folder.
fribidi=/no-fribidi/libfribidi.so.0
for candidate in /usr/lib/*/libfribidi.so.0; do [ -e "$candidate" ] && fribidi=$candidate; done
stage_tools=(ffmpeg=ffmpeg ffprobe=ffmpeg espeak-ng=espeak-ng
  /usr/share/fonts/truetype/noto/NotoSansArabic-Bold.ttf=fonts-noto-core
  /usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc=fonts-noto-cjk
  "$fribidi=libfribidi0")
# gcc names the static libc it would link (just "libc.a" when it has none).
libc_a=$(gcc -print-file-name=libc.a 2>/dev/null || true)
[ "${libc_a#/}" != "$libc_a" ] || libc_a=/no-static-libc/libc.a
image_tools=(podman=podman runc=runc mmdebstrap=mmdebstrap gcc=gcc strip=binutils
  "$libc_a=libc6-dev")
node_tools=(containerd=containerd ctr=containerd runc=runc ip=iproute2
  /usr/lib/cni/bridge=containernetworking-plugins)

missing_packages() {
  local entry
  for entry in "$@"; do
    case ${entry%%=*} in
      /*) [ -e "${entry%%=*}" ] || echo "${entry#*=}" ;;
      *) command -v "${entry%%=*}" >/dev/null || echo "${entry#*=}" ;;
    esac
  done | sort -u
}
mapfile -t stage_missing < <(missing_packages "${stage_tools[@]}")
mapfile -t image_missing < <(missing_packages "${image_tools[@]}" "${node_tools[@]}")
wanted=("${stage_missing[@]}" "${image_missing[@]}")
[ ${#wanted[@]} -eq 0 ] && exit 0

install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${wanted[*]}"
  apt-get update -qq
  [ ${#stage_missing[@]} -eq 0 ] || install "${stage_missing[@]}"
  # The images' and the real node's packages are optional here, as without root.
  [ ${#image_missing[@]} -eq 0 ] || install "${image_missing[@]}" \
    || echo "could not install ${image_missing[*]}: no \`make images\` and no real node here" >&2
  exit 0
fi
if [ ${#image_missing[@]} -gt 0 ]; then
  echo "missing ${image_missing[*]}: \`make images\` and the real node need them (and root): e.g. sudo apt-get install ${image_missing[*]}" >&2
fi
if [ ${#stage_missing[@]} -gt 0 ]; then
  echo "missing ${stage_missing[*]}: install them, e.g. sudo apt-get install ${stage_missing[*]}" >&2
  exit 1
fi
