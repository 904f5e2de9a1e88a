# syntax=docker/dockerfile:1
#
# snigate container image.
#
#   docker build -t snigate .
#   docker run --rm -p 443:443 \
#     -v "$PWD/deploy/etc:/etc/snigate:ro" \
#     -v snigate-logs:/var/log/snigate \
#     snigate
#
# /etc/snigate must hold snigate.toml and the certificates it names (relative
# paths in it are relative to /etc/snigate). Inside a container, listeners bind
# 0.0.0.0 (or [::]), and log files belong under /var/log/snigate. See
# "Docker" in README.md.

# --- build -------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the crates.io download and compiled dependencies between
# builds; the binary is copied out of the cached target folder.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
 && install -m 0755 target/release/snigate /usr/local/bin/snigate

# --- run ---------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 snigate \
 && useradd --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin snigate \
 && mkdir -p /etc/snigate /var/log/snigate /usr/share/doc/snigate \
 && chown snigate:snigate /var/log/snigate

COPY --from=build /usr/local/bin/snigate /usr/local/bin/snigate
# The worked examples, for reference; they are not read from here.
COPY config/ /usr/share/doc/snigate/examples/
COPY README.md /usr/share/doc/snigate/

# Non-root. Docker (20.10 and later) lets an unprivileged process in the
# container's network namespace bind ports below 1024, so 443 works; runtimes
# that do not (Kubernetes without the net.ipv4.ip_unprivileged_port_start
# sysctl, host networking) need the listener on a high port such as 8443.
USER 10001:10001
WORKDIR /var/log/snigate

VOLUME ["/etc/snigate", "/var/log/snigate"]
EXPOSE 443 9900

# No HEALTHCHECK: the slim image has no curl or wget, and snigate has no
# health-probe subcommand yet. Let the orchestrator probe the admin endpoint,
# GET http://<container>:9900/healthz (configure [admin] bind = "0.0.0.0:9900"
# and do not publish that port beyond the orchestrator's network).

# SIGTERM (docker stop) drains open connections for [timeouts] shutdown_grace
# (30 s by default); give `docker stop -t` at least that much.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/snigate"]
CMD ["run", "-c", "/etc/snigate/snigate.toml"]
