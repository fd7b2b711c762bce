# AtoiTalk: one image, one binary for `serve` (the default) and `scheduler`.
#
# BASE_IMAGE is the only knob: a Debian 13 (trixie) root filesystem. The Rust
# toolchain comes from Debian's trixie-backports (rustc/cargo >= 1.89 are
# needed by the locked dependencies), so the build needs nothing beyond the
# Debian archive and crates.io. When a `vendor/` directory is in the build
# context (scripts/docker-smoke.sh VENDOR=1 makes one with `cargo vendor`),
# crates come from it and the build needs no crates.io access at all.
ARG BASE_IMAGE=debian:trixie-slim

FROM ${BASE_IMAGE} AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN echo 'deb http://deb.debian.org/debian trixie-backports main' > /etc/apt/sources.list.d/backports.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends -t trixie-backports cargo rustc \
 && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN if [ -d vendor ]; then \
        mkdir -p .cargo \
        && printf '[source.crates-io]\nreplace-with = "vendored"\n[source.vendored]\ndirectory = "vendor"\n' > .cargo/config.toml; \
    fi
RUN cargo build --release --locked --bin atoitalk \
 && install -D -m 0755 target/release/atoitalk /out/atoitalk

FROM ${BASE_IMAGE}
ARG DEBIAN_FRONTEND=noninteractive
# curl is for the HEALTHCHECK only; ca-certificates for S3/SMTP/Google TLS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --create-home atoitalk \
 && mkdir -p /app/var/media && chown -R atoitalk /app
COPY --from=build /out/atoitalk /usr/local/bin/atoitalk
USER atoitalk
WORKDIR /app
ENV APP_ENV=production \
    APP_PORT=8080 \
    MEDIA_LOCAL_DIR=/app/var/media
EXPOSE 8080
# Liveness only: readiness (/readyz) is for the load balancer.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS "http://127.0.0.1:${APP_PORT}/healthz" >/dev/null || exit 1
ENTRYPOINT ["/usr/local/bin/atoitalk"]
CMD ["serve"]
