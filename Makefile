# gdprgate — build, test, demo. `make test` installs what the tests need
# (redis-server, nginx, caddy, curl, ca-certificates, chromium) with apt-get when it is missing, so a
# fresh machine needs nothing by hand; the console's browser tests then fail rather than skip
# (GDPRGATE_REQUIRE_BROWSER=1) when Chromium cannot start.

GO        ?= go
BIN       ?= bin/gdprgate
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/gdprgate/gdprgate/internal/version.Version=$(VERSION)
REDIS_URL ?=
# Packages with concurrency worth running under the race detector.
RACE_PKGS ?= ./cache/... ./policy/... ./authz/... ./adminapi/... ./internal/... ./redact/... ./e2e/...

# Per test binary: go test's default (10m) is a hang detector, and authz
# under -race on a loaded 2-core machine took longer than that while passing.
TEST_TIMEOUT ?= 30m

# Platforms of `make image`.
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64

.PHONY: all build image test test-deps lint bench demo fuzz clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/gdprgate

# Container images of gdprgate and the example CRM, built without a Docker
# daemon: an OCI layout in bin/image/oci and a docker-loadable tarball
# bin/image/images.tar (see cmd/gdprgate-image; the Dockerfile builds the same
# gdprgate image with Docker).
image:
	$(GO) run ./cmd/gdprgate-image --version $(VERSION) --platforms $(IMAGE_PLATFORMS) --out bin/image

# Test tools the suites start for real (redis-server, nginx, caddy, chromium
# for the admin console's browser tests) and curl for the README walk-through.
# Installed only when missing; a machine without apt-get must provide them
# itself.
test-deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v caddy >/dev/null 2>&1 || missing="$$missing caddy"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing="$$missing chromium"; \
	[ -f /etc/ssl/certs/ca-certificates.crt ] || missing="$$missing ca-certificates"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if command -v apt-get >/dev/null 2>&1; then \
			(apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else echo "apt-get not found: install$$missing yourself" >&2; exit 1; fi; \
	fi

test: test-deps
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || (echo "gofmt needed:"; gofmt -l .; exit 1)
	GDPRGATE_REQUIRE_BROWSER=1 $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	GDPRGATE_REQUIRE_BROWSER=1 $(GO) test -count=1 -timeout $(TEST_TIMEOUT) -race $(RACE_PKGS)

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || (gofmt -l .; exit 1)

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./policy/... ./redact/... ./cache/... ./authz/...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzRewrite -fuzztime 60s ./redact/

demo:
	$(GO) run ./cmd/gdprgate demo $(if $(REDIS_URL),--redis-url $(REDIS_URL),)

clean:
	rm -rf bin
