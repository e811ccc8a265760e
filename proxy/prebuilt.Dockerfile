# sidecar-proxy from a binary built on the host (`cargo build --release -p sidecar-proxy`, then copy
# target/release/sidecar-proxy into the build context). For machines whose image builds cannot reach a
# Rust toolchain; the binary must be built for the base image's glibc (Debian 12 here). The conformance
# suite builds this image. `proxy/Dockerfile` builds the same image from source.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
# iptables: transparent mode's init container runs `sidecar-proxy init-iptables` from this same image.
RUN command -v iptables >/dev/null || (apt-get update \
    && apt-get install -y --no-install-recommends iptables \
    && rm -rf /var/lib/apt/lists/*)
COPY sidecar-proxy /usr/local/bin/sidecar-proxy
# 2102 is the uid transparent mode's iptables rules exempt (--proxy-uid); the injector runs it as that user.
USER 2102:2102
EXPOSE 4140 4143 4191
ENTRYPOINT ["/usr/local/bin/sidecar-proxy"]
