# vodpipe build targets. `make test` is what CI runs (through .ci/run).
GO        ?= go
PKGS      ?= ./...
STATICCHECK_VERSION ?= v0.8.2

.PHONY: test test-short test-security bench chaos chaos-cluster soak upgrade lint build fmt fuzz clean

## test: unit and integration tests, race detector on (needs redis-server on PATH)
test:
	$(GO) test -race -count=1 -timeout 14m $(PKGS)

## test-short: the same without the race detector, faster while editing
test-short:
	$(GO) test -count=1 -timeout 10m $(PKGS)

## test-security: the attacks of the security model, each asserting its refusal (a part of `make test`)
SECURITY_TESTS ?= Security|UploadPage|UploadToken|UploadEvents|Minting|Forged|RateLimits|LimitersStay|Refusals|PublisherPublishes|ServerConfigLoads|GuardedStack|SigningJob|SignatureServiceOverNATS|PolicyIs|SlowClients|StreamsAreCapped|LoadNeverShows|CheckHost|Dialer|CheckDial|AllowListRefuses|CheckWebhookURL|DialGuard|RepliesStayInTheirAccount|LayoutBrokerRefuses|ClearSecretRefusedByDefault|AttachedServicesCannotReshape
test-security:
	$(GO) test -race -count=1 -run '$(SECURITY_TESTS)' ./pkg/... ./internal/...

## bench: P1..P6 side by side into BENCHMARKS.md, then the Go benchmarks (never part of `make test`)
bench:
	$(GO) run ./cmd/vodpipe bench --write BENCHMARKS.md
	$(GO) test -run '^$$' -bench . -benchmem -timeout 30m $(PKGS)

## chaos: the chaos run, 200 jobs on real processes with kills, network faults and a Redis
## Sentinel failover (needs redis-server; under 10 minutes)
chaos:
	$(GO) run ./cmd/vodpipe chaos

## chaos-cluster: the same run on a Redis Cluster whose slots move to other nodes mid-run
chaos-cluster:
	$(GO) run ./cmd/vodpipe chaos --redis cluster

## soak: 30 minutes of jobs and repeating faults; fails if a service's goroutines, heap, open
## files, RSS or JetStream consumers grow, or latency drifts (plot: chaos-soak.svg)
SOAK ?= 30m
soak:
	$(GO) run ./cmd/vodpipe chaos --soak $(SOAK)

## upgrade: a rolling upgrade from the previous version (CHANGELOG.md names its commit; built
## with git worktree) to this tree while jobs flow, one process at a time, then back
upgrade:
	$(GO) run ./cmd/vodpipe chaos --upgrade

## fuzz: run every fuzz target briefly (FUZZTIME each; CI runs it before the tests).
## An execution count (Nx), not a duration: Go 1.26's fuzz coordinator can report a spurious
## "context deadline exceeded" failure when a duration -fuzztime expires mid-exec on a busy
## machine (golang/go#75804, fixed in Go 1.27); a count has no deadline to race.
FUZZTIME ?= 200000x
fuzz:
	$(GO) test ./pkg/job -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/vod -run '^$$' -fuzz '^FuzzParseSignature$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/vod -run '^$$' -fuzz '^FuzzParseEvent$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/webhook -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/checksum -run '^$$' -fuzz '^FuzzCombineCRC64$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/checksum -run '^$$' -fuzz '^FuzzUpdate$$' -fuzztime $(FUZZTIME)

## lint: go vet and staticcheck (installed from the Go module proxy)
lint:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

## build: static binaries into bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ ./cmd/...

clean:
	rm -rf bin
