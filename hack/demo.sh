#!/usr/bin/env bash
# The main job, end to end on the development cluster: install the CRD, run the
# operator, apply examples/videojob.yaml and wait until it has Succeeded.
# The stage pods run on kwok's nodes (each "runs" for a second); real stage
# programs arrive with the reference stages.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
bin=$1            # the folder hack/tools.sh printed
python=$2         # the virtual environment's interpreter
export KUBECONFIG=${VIDOP_CLUSTER_DIR:-$repo/.cluster}/kubeconfig
kubectl() { "$bin/kubectl" "$@"; }

kubectl apply --server-side --force-conflicts -f crds/videojobs.vidop.io.yaml >/dev/null
kubectl wait --for=condition=Established crd/videojobs.vidop.io --timeout=30s >/dev/null

log=${VIDOP_CLUSTER_DIR:-$repo/.cluster}/logs/operator.log
config=$(mktemp)
# No S3 Secret on the development cluster; kwok does not run the stage programs.
printf 's3:\n  credentialsSecret: null\npriorityClasses:\n  high: null\n  low: null\n' > "$config"
VIDOP_CONFIG=$config "$python" -m vid_operator --liveness=http://127.0.0.1:0/healthz >"$log" 2>&1 &
operator=$!
watcher=
trap 'kill $operator $watcher 2>/dev/null; wait $operator 2>/dev/null; rm -f "$config"' EXIT
echo "operator running (pid $operator, log $log)"

kubectl delete videojob cat-surfing --ignore-not-found --wait=true >/dev/null
# Each stage pod "runs" for a second on the kwok nodes.
"$python" - <<'PY' | kubectl apply -f -
import json, yaml
job = yaml.safe_load(open("examples/videojob.yaml"))
for stage in ("script_gen", "voice_gen", "video_gen", "compositing"):
    job["spec"].setdefault("stages", {}).setdefault(stage, {})["podAnnotations"] = {
        "kwok.vidop.io/run-time": "1s"}
print(json.dumps(job))
PY
"$bin/kubectl" get videojobs -w &
watcher=$!
kubectl wait --for=condition=Succeeded videojob/cat-surfing --timeout=120s >/dev/null
kill $watcher 2>/dev/null || true
echo
kubectl get jobs -l vidop.io/videojob=cat-surfing -o wide
kubectl get videojob cat-surfing -o jsonpath='{.status.conditions[?(@.type=="Succeeded")]}{"\n"}'
