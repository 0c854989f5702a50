# syntax=docker/dockerfile:1
#
# One image with every vodpipe binary, static (CGO off), on distroless as user 65532:
#   /usr/local/bin/ingest  /usr/local/bin/worker  /usr/local/bin/notify
#   /usr/local/bin/vodsim  /usr/local/bin/vodpipe (the default entrypoint)
# and the upload page's web SDK in /usr/local/share/vodpipe/web (VODPIPE_WEB_DIR).
# The Helm chart (deploy/helm/vodpipe) picks the binary per Deployment with `command`.
#
#   docker build -t vodpipe:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/vodpipe:TAG --push .

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
# Dependencies first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# Set by BuildKit for the platform being built (docker buildx --platform ...).
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/ \
        ./cmd/ingest ./cmd/worker ./cmd/notify ./cmd/vodsim ./cmd/vodpipe

# The upload page's web SDK (Tencent's vod-js-sdk-v6, pinned by web/package-lock.json),
# which ingest serves at /upload: production dependencies only (no playwright).
FROM --platform=$BUILDPLATFORM node:22-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# distroless/static: CA certificates, tzdata, /etc/passwd with nonroot (65532), no shell.
FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/ /usr/local/bin/
COPY --from=web /web/ /usr/local/share/vodpipe/web/
ENV VODPIPE_WEB_DIR=/usr/local/share/vodpipe/web
USER 65532:65532
# ingest, notify, worker health/metrics, vodsim
EXPOSE 8080 8081 8082 8190
ENTRYPOINT ["/usr/local/bin/vodpipe"]
