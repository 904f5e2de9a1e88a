# syntax=docker/dockerfile:1
#
# snigate container image.
#
#   docker build -t snigate .
#   docker run -d --name snigate --stop-timeout 35 \
#     -p 443:443 -p 127.0.0.1:9900:9900 \
#     -v "$PWD/deploy/etc:/etc/snigate:ro" \
#     -v snigate-logs:/var/log/snigate \
#     snigate
#
# Volumes and paths:
#   /etc/snigate        configuration, read-only: snigate.toml (the default
#                       command reads /etc/snigate/snigate.toml); relative
#                       paths in it are relative to this folder.
#   /etc/snigate/certs  certificates and private keys, by convention (chain =
#                       "certs/farm.crt"): a folder of the configuration
#                       volume, or a read-only mount of its own on top of it
#                       (-v "$PWD/keys:/etc/snigate/certs:ro", the folder must
#                       then exist in the configuration volume). Keys must be
#                       readable by uid 10001. Not a VOLUME of the image: an
#                       anonymous volume there would hide the certs/ folder of
#                       a mounted /etc/snigate.
#   /var/log/snigate    log files (handshake_log, access_log), writable by
#                       uid 10001; the working directory, so relative log paths
#                       of a configuration land here too.
# The human log is on stderr (`docker logs`).
#
# Ports: listeners bind 0.0.0.0 (or [::]) inside a container; 443 is exposed,
# and 9900 for the admin endpoint ([admin] bind = "0.0.0.0:9900" so that the
# host or orchestrator can reach it; publish it on loopback only, as above).
#
# Health: HEALTHCHECK runs `snigate health -c /etc/snigate/snigate.toml`,
# which GETs /healthz on the [admin] address of that configuration (0.0.0.0
# is probed on 127.0.0.1) and exits 0 on 200. A configuration without an
# [admin] section leaves the container "unhealthy": add one, or run with
# --no-healthcheck.
#
# Signals: SIGTERM (docker stop) drains for [timeouts] shutdown_grace (30 s by
# default): give --stop-timeout / `docker stop -t` more than that. SIGHUP
# reloads configuration and certificates: `docker kill --signal HUP snigate`.
#
# See "Docker" in README.md.

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
 && mkdir -p /etc/snigate/certs /var/log/snigate /usr/share/doc/snigate \
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

# The slim image has no curl: snigate probes its own admin endpoint, with a
# 3 s deadline of its own inside Docker's --timeout. Kubernetes ignores
# HEALTHCHECK; deploy/kubernetes/ uses httpGet probes on /healthz instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/snigate", "health", "-c", "/etc/snigate/snigate.toml"]

# SIGTERM (docker stop) drains open connections for [timeouts] shutdown_grace
# (30 s by default); give `docker stop -t` at least that much.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/snigate"]
CMD ["run", "-c", "/etc/snigate/snigate.toml"]
