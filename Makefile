# bal — build, test and try it. `make help` lists the targets.

GO      ?= go
BIN     := bin/bal
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

# Go files that gofmt checks (not testdata, not downloaded node modules).
GOFILES = $(shell find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*' -not -path '*/node_modules/*' -not -path './bench/.work/*')

.PHONY: all help build test fmt-check vet cross lint demo bench soak clean

all: build

help:
	@echo "make build   build $(BIN) (version $(VERSION))"
	@echo "make test    gofmt check, go vet, macOS cross vet+build, go test -race ./..."
	@echo "make lint    gofmt check, go vet, staticcheck"
	@echo "make demo    build, start the sample backends, send traffic through bal, stop everything"
	@echo "make bench   bal vs HAProxy and nginx on loopback (apt-installs wrk, haproxy, nginx, gnuplot; ~12 min)"
	@echo "make soak    long reliability tests and fuzzing (about 30 minutes); prints test -> figure -> pass"
	@echo "make release dist/: tarballs for linux/{amd64,386,arm64} and darwin/{arm64,amd64}, a .deb, SHA256SUMS (reproducible)"
	@echo "make clean   remove $(BIN)"

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/bal

# gofmt -l lists files that need formatting; fail when it lists any.
fmt-check:
	@out="$$(gofmt -l $(GOFILES))"; \
	if [ -n "$$out" ]; then echo "gofmt: these files need formatting (run gofmt -w):"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# bal also ships for macOS: every package must vet and build there.
cross:
	GOOS=darwin GOARCH=arm64 $(GO) vet ./... && GOOS=darwin GOARCH=arm64 $(GO) build ./...
	GOOS=darwin GOARCH=amd64 $(GO) vet ./... && GOOS=darwin GOARCH=amd64 $(GO) build ./...

test: fmt-check vet cross
	$(GO) test -race -count=1 -timeout 14m ./...

lint: fmt-check vet
	$(GO) run $(STATICCHECK) ./...

# Starts the two sample backends (npm run start:all), shows bal check on
# sample/config.yaml, and stops everything it started, even on failure.
demo: build
	@sample/demo.sh $(BIN)

# Side-by-side load test on loopback: bal (gnet and std engines) against
# HAProxy and nginx stream; writes bench/results/<date>.md, .csv and .svg and
# prints the table. Options: bench/run.sh -h, e.g. make bench BENCH_ARGS="-d 2 -r 1".
bench: build
	bench/run.sh $(BENCH_ARGS)

# The long variants of the reliability tests (cmd/bal/reliability) and the
# fuzz targets; prints a table of test -> figure -> pass at the end.
soak:
	@cmd/bal/reliability/soak.sh

# Release artifacts of this commit into dist/ (packaging/README.md): stripped
# static binaries, byte-identical when built again from the same commit.
.PHONY: release
release:
	VERSION=$(VERSION) GO=$(GO) packaging/release.sh dist

clean:
	rm -rf bin
