# Container image for both Queue2Bucket services. The same image runs the API
# (the default command) and the worker (command "worker"):
#
#   docker build -t queue2bucket .
#   docker run --rm -p 8000:8000 --env-file api.env queue2bucket          # api
#   docker run --rm --env-file worker.env queue2bucket worker             # worker
#
# Both architectures at once, as CI builds them (one image index):
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t queue2bucket .
#
# and the static binaries alone, one per architecture, for measuring them or
# running them outside a container (./out/linux_amd64/queue2bucket,
# ./out/linux_arm64/queue2bucket):
#
#   docker buildx build --platform linux/amd64,linux/arm64 --target binary --output type=local,dest=out .
#
# Stages:
#   zigbuild  cargo-zigbuild and zig from PyPI (requirements-zigbuild.txt,
#             hash-checked): zig is the C compiler and linker for both musl
#             targets, so neither needs a cross toolchain of its own
#   chef      Rust toolchain with both musl targets, cargo-chef, zigbuild
#   planner   reduces the workspace to recipe.json (manifests and lock file only)
#   builder   compiles the dependencies from recipe.json (a layer that stays
#             cached until a manifest or Cargo.lock changes), then the project
#             itself, into one fully static binary
#   binary    that binary alone (for --target binary --output type=local)
#   runtime   distroless static: CA certificates, /etc/passwd with the
#             non-root user, tzdata; no libc, no shell, no package manager
#
# Cross-compiling, not emulating: every stage up to the builder runs on the
# machine doing the build ($BUILDPLATFORM), whatever the image's platform;
# TARGETARCH only picks the Rust target (amd64 -> x86_64-unknown-linux-musl,
# arm64 -> aarch64-unknown-linux-musl). Only the runtime stage is of the
# target platform, and it runs nothing while the image is built. No QEMU is
# involved, for either architecture.
#
# Static: the musl targets link the C library in (cargo-zigbuild links with
# zig's bundled musl 1.2.5), and the one C dependency, aws-lc-sys (under
# rustls' aws-lc-rs provider), is compiled by `zig cc` for the target. The
# binary needs no file from the image except those below.
#
# TLS and CA certificates: the AWS SDK connects through hyper-rustls and
# rustls 0.23 with the aws-lc-rs provider, and its root store is
# rustls-native-certs 0.8 (see Cargo.lock), which reads the system bundle:
# /etc/ssl/certs/ca-certificates.crt (openssl-probe 0.2's first candidate on
# Linux) and the files in /etc/ssl/certs. distroless static ships exactly that
# bundle (Debian's ca-certificates package). There are no compiled-in roots
# (no webpki-roots in Cargo.lock): a refreshed base image refreshes the CAs.
# SSL_CERT_FILE / SSL_CERT_DIR override the location.
#
# DNS: the SDK resolves endpoints with getaddrinfo (hyper-util's GaiResolver),
# which is musl's resolver here. It reads /etc/hosts and /etc/resolv.conf,
# which the container runtime (Docker, ECS on Fargate) mounts into every
# container, and no /etc/nsswitch.conf; since musl 1.2.4 it retries over TCP
# when a UDP answer is truncated.
#
# Base images are pinned by the digest of their multi-platform index, so both
# platforms come from one reviewed reference. Where each digest was read:
#   rust:1.95.0-slim-bookworm                  pinned earlier, unchanged here
#   python:3.13-slim                           sha256:8fef26df…, the digest that
#       HomericIntelligence/Scylla pull request #2094 (2026-08-19, "Refresh
#       pinned base-image digests to current registry state") pins
#   gcr.io/distroless/static-debian12:nonroot  sha256:afa5c872…, the index the
#       tag resolved to on 2026-08-26 (MatrixMagician/VillaStraylight,
#       docs/research/update-version-checks.md, a HEAD request to
#       gcr.io/v2/distroless/static-debian12/manifests/nonroot); notes in
#       other repositories record the same index on 2026-09-13 and 2026-09-24,
#       with the linux/amd64 image sha256:52dcfbab… and linux/arm64
#       sha256:06c3c14b…
# To move to newer ones, read the index digest of the tag and replace it here:
#   docker buildx imagetools inspect rust:1.95.0-slim-bookworm
#   docker buildx imagetools inspect python:3.13-slim
#   docker buildx imagetools inspect gcr.io/distroless/static-debian12:nonroot
# (the "Digest:" line; "MediaType" must be an image index, and "Manifests" must
# list linux/amd64 and linux/arm64), then build and run the CI image job.

FROM --platform=$BUILDPLATFORM python:3.13-slim@sha256:8fef26df932191825664e4957ff488c96dfe64918327634a357a55facbc994d3 AS zigbuild
ENV PIP_ROOT_USER_ACTION=ignore
COPY requirements-zigbuild.txt /tmp/requirements-zigbuild.txt
RUN pip install --no-cache-dir --disable-pip-version-check --require-hashes --only-binary=:all: \
        --target /opt/zigbuild -r /tmp/requirements-zigbuild.txt

FROM --platform=$BUILDPLATFORM rust:1.95.0-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082 AS chef
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    PATH=/opt/zigbuild/bin:$PATH \
    CARGO_ZIGBUILD_ZIG_PATH=/opt/zigbuild/ziglang/zig
WORKDIR /src
COPY --from=zigbuild /opt/zigbuild /opt/zigbuild
RUN rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl
RUN --mount=type=cache,id=cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    cargo install cargo-chef --locked --version 0.1.77

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
ARG TARGETARCH
# The Rust target of the image's architecture, kept in a file for the steps below.
RUN case "$TARGETARCH" in \
      amd64) echo x86_64-unknown-linux-musl ;; \
      arm64) echo aarch64-unknown-linux-musl ;; \
      *) echo "no Rust target for TARGETARCH '$TARGETARCH' (amd64 or arm64)" >&2; exit 1 ;; \
    esac >/rust-target
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only: this layer is reused as long as recipe.json is unchanged.
RUN --mount=type=cache,id=cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    cargo chef cook --release --locked --zigbuild --target "$(cat /rust-target)" \
        -p runtime-fargate --no-default-features --bin queue2bucket --recipe-path recipe.json
COPY . .
RUN --mount=type=cache,id=cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    target=$(cat /rust-target) \
    && cargo zigbuild --release --locked -p runtime-fargate --no-default-features --bin queue2bucket --target "$target" \
    && install -D -m 0755 "target/$target/release/queue2bucket" /out/queue2bucket

FROM scratch AS binary
COPY --from=builder /out/queue2bucket /queue2bucket

FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab AS runtime
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
