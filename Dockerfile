# syntax=docker/dockerfile:1
# raftkv image: one node binary (`raftkv`, the entrypoint) and the CLI
# (`raftctl`) on a small glibc runtime. See docs/kubernetes.md.
#
# Two ways to build, one file:
#   docker build -t raftkv .                       # ordinary machine: public
#        # bases, Rust builder stage, distroless runtime (the default target)
#   scripts/image.sh                               # no registry: a locally
#        # debootstrapped base and the binaries built on the host
#        # (--target host --build-arg RUNTIME_BASE=...)
#
# The `host` target comes before the Rust builder on purpose: the classic
# builder (no BuildKit) builds every stage above the target, so a `host`
# build never needs the Rust image.

ARG RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot
ARG RUST_IMAGE=rust:1.95-slim-bookworm

# Everything the running image promises, whichever binaries it gets.
FROM ${RUNTIME_BASE} AS runtime-base
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="raftkv" \
      org.opencontainers.image.description="A Raft-replicated key-value store with a leader lease, built for Kubernetes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/raftkv/raftkv"
# Numeric, non-root (the distroless `nonroot` ids): Kubernetes can check
# runAsNonRoot without an /etc/passwd lookup.
USER 65532:65532
# The node writes only here (a volume), so the root filesystem can be read-only.
# (It is created by the final stages' COPY --chown, owned by that user, so a
# fresh Docker named volume mounted there inherits a writable directory.)
ENV RAFTKV_DATA_DIR=/var/lib/raftkv \
    PATH=/usr/local/bin:/usr/bin:/bin
# client gRPC, peer gRPC, HTTP (/metrics, /livez, /readyz)
EXPOSE 7379 7380 7381
# Exec form, no shell, no init: the node is PID 1 and handles SIGTERM itself
# (a leader hands over, then exits 0); it starts no child processes to reap.
ENTRYPOINT ["/usr/local/bin/raftkv"]
STOPSIGNAL SIGTERM

# Binaries built on the host (scripts/image.sh puts them in target/image/;
# the host must be glibc-compatible with the base, e.g. both bookworm).
FROM runtime-base AS host
COPY --chown=65532:65532 target/image/data/ /var/lib/raftkv/
COPY target/image/raftkv target/image/raftctl /usr/local/bin/

# Build from source.
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY src src
RUN cargo build --release --locked --bin raftkv --bin raftctl \
 && mkdir -p /out/data \
 && cp target/release/raftkv target/release/raftctl /out/ \
 && strip /out/raftkv /out/raftctl

# The default target.
FROM runtime-base AS runtime
COPY --from=build --chown=65532:65532 /out/data/ /var/lib/raftkv/
COPY --from=build /out/raftkv /out/raftctl /usr/local/bin/
