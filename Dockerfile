# syntax=docker/dockerfile:1

# Build: a static worker binary. The golang tag must stay at or above go.mod's go directive
# (deploy_test.go checks it); the image's GOTOOLCHAIN=local will not download a newer Go.
FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0
# Modules first, so a source-only change reuses the download layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN go build -trimpath -ldflags "-X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/worker ./cmd/worker \
 && mkdir -p /out/data

# Run: no shell, no package manager, uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/worker /worker
COPY playbooks /playbooks
# The embedded JetStream store, used only when NATS_URL is unset (docker run without compose).
COPY --from=build --chown=65532:65532 /out/data /data
ENV RIPOSTE_PLAYBOOKS=/playbooks \
    RIPOSTE_DATA_DIR=/data \
    RIPOSTE_HTTP_ADDR=:9464 \
    RIPOSTE_LOG_FORMAT=json
USER nonroot:nonroot
# Metrics and health; the binary asks its own /readyz, as the image has no shell or curl.
EXPOSE 9464
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["/worker", "healthcheck"]
ENTRYPOINT ["/worker"]
CMD ["run"]
