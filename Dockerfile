# syntax=docker/dockerfile:1.7
# visage: build the release binary and fetch the models in a build stage, run as an
# unprivileged user on Debian slim (glibc, which the ONNX Runtime library needs).
#
#   docker build --build-context liveness-models=../shared/models -t visage .
#
# The two liveness models are in no package registry: the named build context hands their
# folder (here ../shared/models, a folder kept beside the checkout) to scripts/models/fetch.sh.
# Models already fetched into ./models are reused as they are (the script only verifies them).
# To use other models, mount a folder over /app/models.

ARG RUST_VERSION=1.95.0

# Replaced by --build-context liveness-models=DIR; empty otherwise, and then
# scripts/models/fetch.sh stops with a message naming the missing file (unless ./models already
# holds it).
FROM scratch AS liveness-models

FROM rust:${RUST_VERSION}-slim-bookworm AS build
# python3-venv for the model converter (scripts/models/requirements.txt); npm for the faceplugin
# liveness model of the default liveness ensemble.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv npm ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# Models first: they change rarely, so this layer outlives code changes.
COPY models/ models/
COPY scripts/models/fetch.sh scripts/models/convert_int8bq.py scripts/models/requirements.txt scripts/models/
RUN --mount=type=bind,from=liveness-models,target=/liveness \
    VISAGE_LIVENESS_MODELS_SRC=/liveness VISAGE_CACHE_DIR=/tmp/model-cache \
    scripts/models/fetch.sh \
    && rm -rf /tmp/model-cache

# rust-toolchain.toml is left out on purpose: the image's toolchain is the pinned version, and
# the file's extra components (rustfmt, clippy) would be downloaded for nothing.
COPY Cargo.toml Cargo.lock ./
COPY crates/ crates/
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p visage-cli \
    && install -m 0755 target/release/visage /usr/local/bin/visage

FROM debian:bookworm-slim AS runtime
# curl for the health check; ca-certificates for TLS to S3 and OTLP endpoints.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin visage \
    && install -d -o visage -g visage -m 0700 /data
WORKDIR /app
COPY --from=build /src/models/ /app/models/
COPY --from=build /usr/local/bin/visage /usr/local/bin/visage

# Container defaults; every other option is a VISAGE_* variable (`visage serve --help`).
ENV VISAGE_SERVER__LISTEN=0.0.0.0:8000 \
    VISAGE_STORAGE__DATA_DIR=/data \
    VISAGE_MODELS_DIR=/app/models \
    VISAGE_LOG_FORMAT=json

USER visage
VOLUME ["/data"]
EXPOSE 8000
# Ready means models loaded and warmed up and storage answering; start-up loads the models.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8000/health/ready || exit 1
ENTRYPOINT ["visage"]
CMD ["serve"]
