# syntax=docker/dockerfile:1
# The controller image, for people who build with Docker (BuildKit), Podman or Buildah:
#   docker build -t aosm-artifact-operator:0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" --build-arg SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)" .
# `make image` (scripts/image.sh) builds the same file system without a Docker engine and
# pushes it; keep the two in step (docs/image.md).
#
# Build stage: a static musl binary. aws-lc-sys and ring compile C code, so the musl target
# needs musl-gcc (musl-tools). The target follows the build platform (x86_64 or aarch64),
# so `docker buildx build --platform linux/amd64,linux/arm64` works too.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eu; \
    target="$(uname -m)-unknown-linux-musl"; \
    rustup target add "$target"; \
    export "CC_$(uname -m)_unknown_linux_musl=musl-gcc" CARGO_PROFILE_RELEASE_STRIP=symbols; \
    cargo build --release --locked --target "$target" --bin aosm-artifact-operator; \
    install -D -m 0755 "target/$target/release/aosm-artifact-operator" /rootfs/usr/local/bin/aosm-artifact-operator; \
    /rootfs/usr/local/bin/aosm-artifact-operator --version
# The rest of the file system, as scripts/image.sh writes it.
RUN set -eu; \
    install -d -m 0755 /rootfs/etc/ssl/certs; \
    install -d -m 1777 /rootfs/tmp; \
    install -m 0644 /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt; \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n' >/rootfs/etc/passwd; \
    printf 'root:x:0:\nnonroot:x:65532:\n' >/rootfs/etc/group; \
    chmod 0644 /rootfs/etc/passwd /rootfs/etc/group

FROM scratch
COPY --from=build /rootfs/ /
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="aosm-artifact-operator" \
      org.opencontainers.image.description="Kubernetes operator and CLI that moves OCI artifacts to and from Azure Operator Service Manager artifact stores" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/aosm-artifact-operator/aosm-artifact-operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
ENV PATH=/usr/local/bin
USER 65532:65532
WORKDIR /
ENTRYPOINT ["/usr/local/bin/aosm-artifact-operator"]
CMD ["run"]
