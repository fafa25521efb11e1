# Herald's one command surface. Every target runs on the pinned Node from tools/node.sh.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

NODE_BIN := $(shell bash tools/node.sh)
ifeq ($(NODE_BIN),)
$(error could not install Node; see the message above)
endif
export PATH := $(NODE_BIN):$(CURDIR)/node_modules/.bin:$(PATH)
NODE := node --conditions=herald-source
GATEWAY := services/gateway/src/main.ts

UNIT := 'packages/protocol/test/**/*.test.ts' 'packages/testkit/test/process.test.ts' 'services/*/test/unit/**/*.test.ts'
INTEGRATION := 'services/*/test/integration/**/*.test.ts'
JETSTREAM := 'packages/testkit/test/nats.test.ts' 'services/*/test/jetstream/**/*.test.ts'
KUBE := 'packages/testkit/test/kube.test.ts'
CHART := 'charts/*/test/**/*.test.ts'
CLUSTER := 'packages/testkit/test/cluster.test.ts'
E2E := 'charts/*/test/**/*.e2e.ts'
BROWSER := 'services/*/test/browser/**/*.test.ts'

.PHONY: build dist-test image image-test help deps dev run check lint format types unit test integration jetstream browser observability kube-tools kube chart cluster-tools cluster e2e docs docs-check dashboards dashboards-check bench bench-publish clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# `npm install` honours the lock file's versions; `npm ci` here rejects its lock for lacking the
# optional per-platform packages (biome's binaries) that npm itself leaves out of it.
node_modules/.stamp: package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

deps: node_modules/.stamp ## Install npm dependencies (pinned by package-lock.json)

dev: deps ## One gateway on the embedded broker with the demo page (port HERALD_PORT, default 8080)
	HERALD_AUTH=$${HERALD_AUTH:-none} HERALD_DEMO=1 HERALD_RETRY_MS=$${HERALD_RETRY_MS:-1000} $(NODE) $(GATEWAY)

run: deps ## One gateway exactly as the container runs it: every setting from HERALD_* variables
	$(NODE) $(GATEWAY)

check: lint types unit docs-check dashboards-check ## The fast loop: lint, types, unit tests

lint: deps ## Biome lint and format check
	biome check .

format: deps ## Apply Biome's formatting and safe fixes
	biome check --write .

types: deps ## TypeScript type-check (no emit)
	tsc -p .

unit: deps ## Unit tests of the pure parts
	$(NODE) --test --test-reporter=spec $(UNIT)

integration: deps ## Gateway over real HTTP on port 0
	$(NODE) --test --test-reporter=spec $(INTEGRATION)

jetstream: deps ## Gateways against real nats-server (built by tools/nats-server.sh)
	bash tools/nats-server.sh >/dev/null
	$(NODE) --test --test-reporter=spec $(JETSTREAM)

browser: deps ## A real Chromium (Debian's, installed by tools/chromium.sh) against the gateway
	bash tools/chromium.sh >/dev/null
	$(NODE) --test --test-reporter=spec --test-concurrency=1 $(BROWSER)

observability: deps ## Alert rules through promtool (Debian's Prometheus, from tools/prometheus.sh), runbooks, dashboards
	bash tools/prometheus.sh >/dev/null
	$(NODE) --test --test-reporter=spec 'observability/test/**/*.test.ts'

build: deps ## Compile the gateway to JavaScript (services/gateway/dist), as its Dockerfile does
	@# From scratch: output of a deleted source must not linger for dist-test to pass against.
	rm -rf packages/protocol/dist services/gateway/dist
	tsc -p packages/protocol/tsconfig.build.json
	tsc -p services/gateway/tsconfig.build.json
	rm -rf services/gateway/dist/demo && cp -r services/gateway/src/demo services/gateway/dist/demo

dist-test: build ## The compiled gateway, run by plain node (no TypeScript), against real HTTP
	$(NODE) --test --test-reporter=spec 'services/gateway/test/compiled/**/*.test.ts'

image: build ## Container images without a container engine: .images/{gateway,nats-server,pause}.tar (docker/podman load, ctr import)
	bash tools/nats-server.sh >/dev/null
	$(NODE) tools/image/build.ts

image-test: image ## The images: as the Dockerfile says, well-formed, reproducible, ctr and podman load them, they run (root)
	bash tools/image-podman.sh >/dev/null
	bash tools/containerd.sh >/dev/null
	$(NODE) --test --test-reporter=spec --test-concurrency=1 'tools/image/test/**/*.test.ts'

kube-tools: ## Build helm, etcd and kube-apiserver and extract the CRDs (tools/helm.sh, tools/kube.sh; long the first time)
	bash tools/helm.sh >/dev/null
	bash tools/kube.sh >/dev/null
	bash tools/kube.sh crds >/dev/null

kube: deps kube-tools ## The test bed: etcd and kube-apiserver with the chart's CRDs (the first build takes ≈ 11 min)
	$(NODE) --test --test-reporter=spec $(KUBE)

chart: deps kube-tools ## The Helm chart: lint, template assertions, install/upgrade/uninstall on the test bed
	$(NODE) --test --test-reporter=spec $(CHART)

cluster-tools: ## Build what the one-node cluster runs: kubelet & co. (tools/kube.sh node), containerd & co. from Debian, CoreDNS, Traefik
	bash tools/kube.sh >/dev/null
	bash tools/kube.sh node >/dev/null
	bash tools/containerd.sh >/dev/null
	bash tools/coredns.sh >/dev/null
	bash tools/traefik.sh >/dev/null

cluster: deps cluster-tools image ## A one-node cluster in a network namespace runs a pod (root, cgroups; not in `make test` yet)
	$(NODE) --test --test-reporter=spec --test-concurrency=1 $(CLUSTER)

e2e: deps kube-tools cluster-tools image ## The chart on the one-node cluster: helm install/test, SSE through the Gateway, release pins, a pod's clients resuming, uninstall (root)
	$(NODE) --test --test-reporter=spec --test-concurrency=1 $(E2E)

test: check integration jetstream browser observability kube chart dist-test image-test e2e ## Everything; what CI runs

docs: deps ## Regenerate the settings table in README.md
	$(NODE) tools/settings-doc.ts --write

docs-check: deps
	$(NODE) tools/settings-doc.ts --check

dashboards: deps ## Regenerate the Grafana dashboards' JSON in observability/dashboards/json
	$(NODE) observability/dashboards/generate.ts

dashboards-check: deps
	$(NODE) observability/dashboards/generate.ts --check

bench: deps ## Herald (embedded and JetStream) against a raw node:http reference, and resume storms (.bench/results.json)
	$(NODE) load-tests/bench/run.ts

bench-publish: deps ## Publish throughput on JetStream: this checkout against the one in BASE (a directory), medians and ratio
	bash tools/nats-server.sh >/dev/null
	BASE=$(BASE) $(NODE) load-tests/bench/publish-ab.ts

clean: ## Remove installed dependencies and benchmark output
	rm -rf node_modules .bench
