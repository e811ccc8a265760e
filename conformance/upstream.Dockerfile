# The conformance suite's upstream (conformance/src/bin/conformance-upstream.rs), from a binary built on
# the host. The suite builds this image itself.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
COPY conformance-upstream /usr/local/bin/conformance-upstream
USER 10001:10001
