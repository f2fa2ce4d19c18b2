#!/usr/bin/env bash
# Builds the repository's images with podman (no Docker engine needed), from
# the Dockerfiles as they are, and prints the path of one archive that holds
# them on its last line of standard output (everything else goes to stderr).
#
#   docker.io/library/python:3.11.11-slim-bookworm
#       a STAND-IN for the official image the Dockerfiles start FROM, made
#       here from Debian bookworm packages with mmdebstrap, because no
#       container registry is reachable where we develop. For local builds
#       and CI only: never push it, nor an image built on it. How it differs
#       from the official image: Debian's Python (3.11.2 with Debian's
#       patches, not 3.11.11 built from source), in a virtual environment at
#       /usr/local so /usr/local/bin/python and pip and the Dockerfiles'
#       `pip install --prefix=/install` + `COPY /install /usr/local` work as
#       there; Debian's pip and setuptools wheels; it trusts the CA
#       certificates this host added locally (/usr/local/share/ca-certificates)
#       so pip reaches the package index through this host's TLS-intercepting
#       egress; apt sources are this host's Debian sources.
#   vid-operator/stage-base:<version>       stage_images/base/Dockerfile
#   vid-operator/stage-code:<version>       the same file, --target code: the
#                                           project's code alone, which each stage
#                                           image copies last
#   ghcr.io/vid-operator/<stage>:<version>  stage_images/vidop_stages/<stage>/Dockerfile,
#                                           <stage> with - for _ (the operator's defaults)
#   ghcr.io/vid-operator/operator:<appVersion>  Dockerfile (the chart's default)
#   registry.k8s.io/pause:3.10              hack/images/pause.Dockerfile: the real
#                                           node's pod sandbox, Kubernetes' pause.c
#                                           built here (gcc, static)
#
# The archive, $VIDOP_CACHE_DIR/images/vid-operator-images-<version>.tar
# (default cache ~/.cache/vid-operator), is a docker-archive of the stage
# images, the operator and the pause image, for `ctr -n k8s.io images import`; next to it a
# .json lists each image's reference and ID. It is written again only when an
# image ID changed. podman keeps layers, so a rebuild after a code change
# reruns only the layers from the copied code on.
#
# Needs root, podman, runc, mmdebstrap, gcc with a static libc, and go
# (hack/system-deps.sh installs the packages).
# podman reads hack/images/containers.conf (CONTAINERS_CONF); /etc is left
# alone. Builds use the host's network.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${VIDOP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vid-operator}
out=$cache/images
export CONTAINERS_CONF=$repo/hack/images/containers.conf
log() { printf '[images] %s\n' "$*" >&2; }
timed() { local t0=$SECONDS; "$@"; log "$* took $((SECONDS - t0)) s"; }
# Build folders of this run, removed however it ends.
scratch=$(mktemp -d)
partial=()  # half-written archive or listing of this run, if any
trap 'rm -rf "$scratch" "${partial[@]}"' EXIT

for tool in podman mmdebstrap; do
  command -v "$tool" >/dev/null || { log "missing $tool: run hack/system-deps.sh (as root)"; exit 1; }
done

version=$(awk -F'"' '$1 == "version = " {print $2; exit}' "$repo/pyproject.toml")
app_version=$(awk -F'"' '$1 == "appVersion: " {print $2; exit}' "$repo/charts/vid-operator/Chart.yaml")
# The names the Dockerfiles use, read from them so the two never drift.
python_ref=docker.io/library/$(awk '$1 == "FROM" && $2 ~ /^python:/ {print $2; exit}' "$repo/Dockerfile")
stage_base_ref=$(awk -F= '$1 == "ARG STAGE_BASE" {print $2; exit}' \
  "$repo/stage_images/vidop_stages/script_gen/Dockerfile")
stage_code_ref=$(awk -F= '$1 == "ARG STAGE_CODE" {print $2; exit}' \
  "$repo/stage_images/vidop_stages/script_gen/Dockerfile")
stages=(script_gen voice_gen video_gen compositing loudness)
operator_ref=ghcr.io/vid-operator/operator:$app_version
stage_ref() { echo "ghcr.io/vid-operator/${1//_/-}:$version"; }
pause_ref=registry.k8s.io/pause:3.10

# The stand-in's packages; the recipe label below changes with them, with
# make_standin itself, with the host's Debian sources and with its CA
# certificates, and the stand-in is made again when the label differs.
standin_packages=python3,python3-venv,ca-certificates
standin_label=io.vid-operator.standin-recipe

# The host's enabled Debian sources (deb822 stanzas and one-line entries that
# name a bookworm suite), so mmdebstrap and apt inside the builds use the
# mirror the host uses.
debian_sources() {
  local file
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -e "$file" ] || continue
    awk 'BEGIN {RS = ""; ORS = "\n\n"}
         /(^|\n)Suites:[^\n]*bookworm/ && !/(^|\n)Enabled: *[Nn]o/' "$file"
  done
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -e "$file" ] || continue
    grep -E '^deb [^#]* bookworm' "$file" || true
  done
}

make_standin() {
  local sources=$1 tarball=$2
  # dpkg leaves out documentation, manuals and translations, as the official
  # slim images do (also in what the stage images install with apt later).
  # The hooks run in mmdebstrap's shell, where $1 is the new root filesystem.
  # shellcheck disable=SC2016
  mmdebstrap --variant=minbase --include="$standin_packages" --format=tar \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='cp -a /usr/local/share/ca-certificates/. "$1/usr/local/share/ca-certificates/"' \
    --customize-hook='chroot "$1" update-ca-certificates' \
    --customize-hook='chroot "$1" python3 -m venv /usr/local' \
    --customize-hook='chroot "$1" /usr/local/bin/pip --version' \
    bookworm "$tarball" "$sources"
}

ensure_standin() {
  local sources recipe current tmp
  sources=$(debian_sources)
  [ -n "$sources" ] || { log "no bookworm entry in the host's apt sources: the stand-in needs a Debian mirror"; exit 1; }
  recipe=$({
    declare -f make_standin
    echo "$standin_packages"
    echo "$sources"
    cat /usr/local/share/ca-certificates/* 2>/dev/null || true
  } | sha256sum | cut -c1-16)
  current=$(podman image inspect --format "{{index .Labels \"$standin_label\"}}" "$python_ref" 2>/dev/null || true)
  if [ "$current" = "$recipe" ]; then
    log "stand-in $python_ref is up to date (recipe $recipe)"
    return
  fi
  log "making the stand-in $python_ref from Debian packages (recipe $recipe; about half a minute)"
  tmp=$scratch/standin
  mkdir -p "$tmp"
  printf '%s\n' "$sources" > "$tmp/debian.sources"
  make_standin "$tmp/debian.sources" "$tmp/rootfs.tar" 2> "$tmp/mmdebstrap.log" \
    || { tail -n 30 "$tmp/mmdebstrap.log" >&2; rm -rf "$tmp"; exit 1; }
  podman import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --change "LABEL $standin_label=$recipe" \
    --change 'LABEL io.vid-operator.standin=local-builds-only-never-publish' \
    --message "stand-in for $python_ref from Debian bookworm packages (hack/images.sh)" \
    "$tmp/rootfs.tar" "$python_ref" >/dev/null
  rm -rf "$tmp"
}

# The real node's sandbox image (its name is vidop_devcluster.realnode's
# PAUSE_IMAGE): pause.c of the Kubernetes version hack/controlplane builds,
# compiled static with the host's gcc; podman's layer cache keeps the image
# as long as the binary is the same.
build_pause() {
  local k8s_version module context
  k8s_version=$(awk '$1 == "k8s.io/kubernetes" {print $2}' "$repo/hack/controlplane/go.mod")
  module=$(cd "$repo/hack/controlplane" && GOTOOLCHAIN=local GOFLAGS=-mod=mod \
    go mod download -json "k8s.io/kubernetes@$k8s_version" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  context=$scratch/pause
  mkdir -p "$context"
  gcc -Os -static -DVERSION="vidop-$k8s_version" -o "$context/pause" "$module/build/pause/linux/pause.c"
  strip "$context/pause"
  log "building $pause_ref from $module/build/pause/linux/pause.c"
  podman build --layers --pull=never --quiet=false -f "$repo/hack/images/pause.Dockerfile" \
    -t "$pause_ref" "$context" >&2
  rm -rf "$context"
}

build() {
  local ref=$1 dockerfile=$2
  shift 2
  log "building $ref from $dockerfile $*"
  # --pull=never: every FROM is the stand-in or an image built here, and
  # nothing could be pulled anyway. The build's output goes to stderr so the
  # last line of stdout stays the archive's path.
  podman build --layers --pull=never --network=host --quiet=false \
    -f "$repo/$dockerfile" -t "$ref" "$@" "$repo" >&2
}

timed ensure_standin
timed build "$stage_code_ref" stage_images/base/Dockerfile --target code
timed build "$stage_base_ref" stage_images/base/Dockerfile
archived=()
for stage in "${stages[@]}"; do
  timed build "$(stage_ref "$stage")" "stage_images/vidop_stages/$stage/Dockerfile"
  archived+=("$(stage_ref "$stage")")
done
timed build "$operator_ref" Dockerfile
archived+=("$operator_ref")
timed build_pause
archived+=("$pause_ref")

mkdir -p "$out"
archive=$out/vid-operator-images-$version.tar
manifest=${archive%.tar}.json
listing=$(for ref in "${archived[@]}"; do
  printf '%s %s\n' "$ref" "$(podman image inspect --format '{{.Id}}' "$ref")"
done | awk 'BEGIN {print "{\n  \"archive\": \"'"$(basename "$archive")"'\",\n  \"images\": ["}
            {printf "%s    {\"ref\": \"%s\", \"id\": \"%s\"}", (NR > 1 ? ",\n" : ""), $1, $2}
            END {print "\n  ]\n}"}')
if [ -e "$archive" ] && [ -e "$manifest" ] && [ "$(cat "$manifest")" = "$listing" ]; then
  log "no image changed since $archive was written"
else
  log "saving ${#archived[@]} images into $archive"
  # Written beside their final names and renamed into place, the listing
  # last: a concurrent run or reader never sees half of either.
  partial=("$archive.tmp.$$" "$manifest.tmp.$$")
  timed podman save --multi-image-archive --format docker-archive \
    -o "$archive.tmp.$$" "${archived[@]}"
  mv "$archive.tmp.$$" "$archive"
  printf '%s\n' "$listing" > "$manifest.tmp.$$"
  mv "$manifest.tmp.$$" "$manifest"
fi
echo "$archive"
