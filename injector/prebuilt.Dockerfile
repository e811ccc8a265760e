# sidecar-injector from a binary built on the host (`cargo build --release -p sidecar-injector`, then copy
# target/release/sidecar-injector into the build context). For machines whose image builds cannot reach a
# Rust toolchain; the binary must be built for the base image's glibc (Debian 12 here).
# `injector/Dockerfile` builds the same image from source.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
COPY sidecar-injector /usr/local/bin/sidecar-injector
# Any non-root uid works (the webhook listens on 8443); deploy/deployment.yaml runs it as 65532.
# The base image's `sleep` serves the Deployment's preStop hook.
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/sidecar-injector"]
CMD ["serve"]
