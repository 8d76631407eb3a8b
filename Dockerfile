# syntax=docker/dockerfile:1
# Quire's images, from one build:
#   (default, last stage) runtime: `web serve`, `worker` and `web migrate` (see Procfile)
#   --target caddy: the load balancer of docker-compose.yml, with static/ inside
#
# Templates, static files and migrations are embedded in release binaries (include_dir,
# sqlx::migrate!), so the runtime image holds the two binaries and nothing else of ours.
# No sqlx query macro is used, so the build needs no database and no prepared queries.

# --- dependencies, cached apart from our code (cargo-chef) ----------------------------
FROM rust:1-bookworm AS chef
RUN cargo install cargo-chef --locked
WORKDIR /src

# The recipe is the workspace's manifests and lock file, with our sources stripped: it
# changes only when dependencies do, so the `cook` layer below survives code changes.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Builds every dependency of web and worker (not bench) in release mode.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo chef cook --release --locked -p app -p worker --recipe-path recipe.json
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked -p app -p worker --bin web --bin worker

# --- static files for Caddy, under both names the app serves ---------------------------
# The app names each file `dir/stem.<hash>.ext`, hash = the first 10 hex digits of the
# content's SHA-256 (app/src/web/static_files.rs: fingerprint_name); the same names
# here let Caddy answer the pages' fingerprinted URLs from disk.
FROM debian:bookworm-slim AS assets
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY static/ /srv/static/
RUN cd /srv/static && find . -type f -print0 | while IFS= read -r -d '' f; do \
      dir=$(dirname "$f"); base=$(basename "$f"); \
      hash=$(sha256sum "$f" | cut -c1-10); \
      stem=${base%.*}; \
      if [ "$stem" != "$base" ] && [ -n "$stem" ]; then name="$stem.$hash.${base##*.}"; else name="$base.$hash"; fi; \
      cp "$f" "$dir/$name"; \
    done

FROM caddy:2 AS caddy
COPY --from=assets /srv/static/ /srv/static/
COPY ops/compose/Caddyfile /etc/caddy/Caddyfile

# --- runtime ---------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
# ca-certificates: TLS to PostgreSQL, Redis (rediss://) and SMTP relays is verified
# against the system's roots.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --user-group --uid 10001 --home-dir /app --shell /usr/sbin/nologin quire
COPY --from=builder /src/target/release/web /src/target/release/worker /usr/local/bin/
WORKDIR /app
# var/ (MEDIA_ROOT's default, var/media) must be writable by the app user; mount a
# volume there to keep uploads.
RUN mkdir -p /app/var/media && chown -R quire:quire /app/var
ENV APP_ENV=production \
    PORT=8000
USER quire
EXPOSE 8000
# No HEALTHCHECK here: the image also runs workers and the release step, which serve no
# port. docker-compose.yml checks each service its own way.
CMD ["web", "serve"]
