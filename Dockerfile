# Container image for both Queue2Bucket services. The same image runs the API
# (the default command) and the worker (command "worker"):
#
#   docker build -t queue2bucket .
#   docker run --rm -p 8000:8000 --env-file api.env queue2bucket          # api
#   docker run --rm --env-file worker.env queue2bucket worker             # worker
#
# Stages:
#   chef     Rust toolchain plus cargo-chef
#   planner  reduces the workspace to recipe.json (manifests and lock file only)
#   builder  compiles the dependencies from recipe.json (a layer that stays cached
#            until a manifest or Cargo.lock changes), then the project itself
#   runtime  distroless: glibc, libgcc, CA certificates and a non-root user; no
#            shell, no package manager, no compiler
#
# Base images are pinned by digest of their multi-platform index. To move to a
# newer one, look the digest up with
#   docker buildx imagetools inspect rust:1.95.0-slim-bookworm
#   docker buildx imagetools inspect gcr.io/distroless/cc-debian12:nonroot
# The builder is Debian 12 (bookworm), like the runtime, so the binary never
# links against a newer glibc than the runtime has.

FROM rust:1.95.0-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082 AS chef
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0
WORKDIR /src
RUN --mount=type=cache,id=cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    cargo install cargo-chef --locked --version 0.1.77

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only: this layer is reused as long as recipe.json is unchanged.
RUN --mount=type=cache,id=cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    cargo chef cook --release --locked -p runtime-fargate --no-default-features --bin queue2bucket --recipe-path recipe.json
COPY . .
RUN --mount=type=cache,id=cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    cargo build --release --locked -p runtime-fargate --no-default-features --bin queue2bucket \
    && install -D -m 0755 target/release/queue2bucket /out/queue2bucket

FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f AS runtime
LABEL org.opencontainers.image.title="queue2bucket" \
      org.opencontainers.image.description="Queue2Bucket: HTTP API to SQS, and an SQS worker that stores each message in S3" \
      org.opencontainers.image.licenses="MIT"
COPY --from=builder /out/queue2bucket /usr/local/bin/queue2bucket
ENV PORT=8000
# 65532 is the "nonroot" user and group of the distroless images.
USER 65532:65532
EXPOSE 8000
# Exec form: there is no shell in this image. `queue2bucket health` exits 0 when
# GET http://127.0.0.1:$PORT/ answers 200, which is what the api serves.
# compose.yaml turns it off for the worker; on ECS the task definition's own
# health check applies and this one is ignored.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/queue2bucket", "health"]
ENTRYPOINT ["/usr/local/bin/queue2bucket"]
CMD ["api"]
