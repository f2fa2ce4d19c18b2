# vid-operator development tasks. `make help` lists them.
SHELL := bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Where `make cluster-up` keeps the development cluster (kubeconfig, logs, PKI).
export VIDOP_CLUSTER_DIR ?= $(CURDIR)/.cluster

.PHONY: help venv tools system-deps images cluster-up cluster-down cluster-status demo demo-down fetch test \
        test-unit test-integration lint crds chart controlplane-gomod clean bench bench-queueing \
        bench-fanout bench-realtime chaos

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

venv: $(VENV)/.installed ## Create the virtual environment with the package and its test tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

tools: venv ## Build (or find in ~/.cache/vid-operator) etcd, kube-*, kwok, Kueue, kubectl and helm
	PYTHON=$(BIN)/python bash hack/tools.sh

system-deps: ## Install the Debian packages the stages (ffmpeg, espeak-ng), `make images` (podman, mmdebstrap) and the real node (containerd, runc, CNI plugins) need, when missing
	bash hack/system-deps.sh

images: system-deps ## Build the images from the Dockerfiles with podman (root); prints the archive of the stage and operator images
	bash hack/images.sh

cluster-up: venv tools ## Start the development control plane (KUEUE=1: with Kueue; REAL_NODE=1: with a real node); prints the KUBECONFIG to use
	$(BIN)/python -m vidop_devcluster up $(if $(filter 1,$(KUEUE)),--kueue) $(if $(filter 1,$(REAL_NODE)),--real-node)

cluster-down: venv ## Stop the development control plane (only the processes it started)
	$(BIN)/python -m vidop_devcluster down

cluster-status: venv ## Tell whether the development control plane runs
	$(BIN)/python -m vidop_devcluster status

# What `make demo` and `make fetch` take from the command line, handed to
# hack/demo.py as arguments: each value quoted for bash as $'...' with its
# backslashes, quotes and newlines escaped, so that nothing in a prompt ($,
# backticks, quotes) is interpreted by make or the shell. Only values given on
# the command line count (a stray NAME or PROMPT in the environment does not),
# and none is exported to the recipes' environment, where make would expand
# the $ in it.
define newline


endef
shell_quote = $$'$(subst $(newline),\n,$(subst ',\',$(subst \,\\,$(1))))'
from_command_line = $(if $(findstring command line,$(origin $(1))),--$(2)=$(call shell_quote,$(value $(1))))
unexport PROMPT DURATION RESOLUTION VJ NS KEEP
DEMO_ARGS = $(call from_command_line,PROMPT,prompt) $(call from_command_line,DURATION,duration) \
            $(call from_command_line,RESOLUTION,resolution) $(call from_command_line,VJ,name) \
            $(if $(filter 1,$(KEEP)),--keep)

demo: venv tools system-deps ## The main job: a VideoJob -> operator -> Jobs -> real or local node -> MP4 in .demo/output (PROMPT="..." DURATION=s RESOLUTION=WxH VJ=name; KEEP=1: stays up)
	$(BIN)/python hack/demo.py run $(DEMO_ARGS)

fetch: venv ## Download a Succeeded VideoJob's MP4 and thumbnail from the running demo into .demo/output (VJ=name, NS=namespace)
	$(if $(findstring command line,$(origin VJ)),,$(error make fetch VJ=<videojob name> [NS=<namespace>]))
	$(BIN)/python hack/demo.py fetch $(call shell_quote,$(value VJ)) $(call from_command_line,NS,namespace)

demo-down: venv ## Stop everything `make demo KEEP=1` left running (or a crashed demo left behind)
	$(BIN)/python hack/demo.py down

test: venv tools system-deps ## Run every test: unit, then integration on a fresh real control plane
	$(BIN)/pytest tests

test-unit: venv ## Run the tests that need no cluster
	$(BIN)/pytest tests/unit

test-integration: venv tools ## Run the integration tests against `make cluster-up`'s cluster
	VIDOP_USE_EXISTING_CLUSTER=1 KUBECONFIG=$(VIDOP_CLUSTER_DIR)/kubeconfig $(BIN)/pytest tests/integration

bench: venv tools ## Benchmark the operator against an oracle on its own control plane (BENCH_ARGS=--quick: a few minutes)
	$(BIN)/python -m tests.benchmarks.bench $(BENCH_ARGS)

bench-queueing: venv tools ## Many VideoJobs on 16 GPUs through Kueue and without: GPU utilisation while work waits (BENCH_ARGS=--help)
	$(BIN)/python -m tests.benchmarks.queueing $(BENCH_ARGS)

bench-fanout: venv tools ## VideoJobs of 8 scenes on 16 kwok GPUs, one pod per scene against one pod for all: video_gen wall time, GPU utilisation (BENCH_ARGS=--help)
	$(BIN)/python -m tests.benchmarks.fanout $(BENCH_ARGS)

bench-realtime: venv tools system-deps ## A 60 s VideoJob by the real stages on the local node at 720p (fanned out and not) and 1080p: stage times against real time (BENCH_ARGS=--help)
	$(BIN)/python -m tests.benchmarks.realtime $(BENCH_ARGS)

chaos: venv tools ## Full chaos run: hundreds of VideoJobs, operator kills, an API server restart, hostile input
	$(BIN)/pytest tests/chaos/chaos_full.py -s $(CHAOS_ARGS)

lint: venv ## ruff, mypy --strict, import-linter, hadolint, helm lint
	$(BIN)/ruff check operator stage_images tests hack
	$(BIN)/ruff format --check operator stage_images tests hack
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile stage_images/base/Dockerfile stage_images/vidop_stages/*/Dockerfile hack/images/pause.Dockerfile
	"$$(PYTHON=$(BIN)/python bash hack/tools.sh)/helm" lint --strict charts/vid-operator

crds: venv ## Regenerate crds/ and the chart's CRD template from the pydantic models
	$(BIN)/python -m vid_operator.api.crd videojobs > crds/videojobs.vidop.io.yaml
	$(BIN)/python -m vid_operator.api.crd videopipelines > crds/videopipelines.vidop.io.yaml
	$(BIN)/python -m vid_operator.api.crd --chart > charts/vid-operator/templates/crd.yaml

chart: venv ## Regenerate the chart's values.schema.json and its README's values table
	$(BIN)/python hack/chart_values.py schema
	$(BIN)/python hack/chart_values.py readme

controlplane-gomod: ## Regenerate hack/controlplane/go.mod for K8S_VERSION (default: the current one)
	hack/controlplane/gen-gomod.sh $${K8S_VERSION:-$$(awk '$$1 == "k8s.io/kubernetes" {print $$2}' hack/controlplane/go.mod)}

clean: ## Stop the cluster, remove the virtual environment and the cluster folder (not the binary cache)
	if [ -x $(BIN)/python ]; then $(BIN)/python -m vidop_devcluster down; fi
	rm -rf $(VENV) $(VIDOP_CLUSTER_DIR)
