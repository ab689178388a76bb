# The one WasmWiz image: a static binary on distroless (no shell, no package manager), running
# as the distroless "nonroot" user (65532). Every role is an argument: gateway, executor,
# accounting, admin bootstrap, ... Secrets are mounted at run time, never copied in
# (.dockerignore keeps secrets/ and data directories out of the build context).
#
#   docker build -t wasmwiz .
#
# The root filesystem can be read-only: executors need a writable --cache-dir (a volume or
# tmpfs) and nothing else writes.

FROM golang:1.27.3-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/wasmwiz ./cmd/wasmwiz
# The executor's worker processes, in a binary of their own: it starts in a third of the time.
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/wasmwiz-worker ./cmd/wasmwiz-worker

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/wasmwiz /usr/local/bin/wasmwiz
COPY --from=build /out/wasmwiz-worker /usr/local/bin/wasmwiz-worker
USER 65532:65532
EXPOSE 8080 9091 9092
ENTRYPOINT ["/usr/local/bin/wasmwiz"]
CMD ["help"]
