# syntax=docker/dockerfile:1
# Quire production image: `web serve`, `worker` and `web migrate` (see Procfile).
# Recommended .dockerignore: target/ var/ .env .git e2e/node_modules (keeps the
# build context small; var/ holds the local PostgreSQL clusters).

# --- build ---------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
# sqlx's query macros use the prepared query data in the repo instead of
# connecting to a database at build time.
ENV SQLX_OFFLINE=true
COPY . .
# The cache mount keeps downloaded crates between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked

# --- run -----------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --user-group --home-dir /app --shell /usr/sbin/nologin quire
COPY --from=builder /src/target/release/web /src/target/release/worker /usr/local/bin/
WORKDIR /app
COPY templates/ /app/templates/
COPY static/ /app/static/
# var/ (MEDIA_ROOT's default, var/media) must be writable by the app user;
# mount a volume there to keep uploads.
RUN mkdir -p /app/var/media && chown -R quire:quire /app/var
ENV APP_ENV=production \
    PORT=8000
USER quire
EXPOSE 8000
CMD ["web", "serve"]
