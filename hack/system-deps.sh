#!/usr/bin/env bash
# Debian packages the project runs, installed when missing (as root, with
# apt-get); otherwise we say what to run.
#
#   ffmpeg, ffprobe, espeak-ng     the reference stages run them (the tests and
#                                  `make demo`): missing ones fail this script
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
stage_tools=(ffmpeg=ffmpeg ffprobe=ffmpeg espeak-ng=espeak-ng)
image_tools=(podman=podman runc=runc mmdebstrap=mmdebstrap gcc=gcc strip=binutils
  /usr/lib/x86_64-linux-gnu/libc.a=libc6-dev)
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

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${wanted[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null
  exit 0
fi
if [ ${#image_missing[@]} -gt 0 ]; then
  echo "missing ${image_missing[*]}: \`make images\` and the real node need them (and root): e.g. sudo apt-get install ${image_missing[*]}" >&2
fi
if [ ${#stage_missing[@]} -gt 0 ]; then
  echo "missing ${stage_missing[*]}: install them, e.g. sudo apt-get install ${stage_missing[*]}" >&2
  exit 1
fi
