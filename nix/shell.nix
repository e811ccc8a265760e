# `nix develop`: everything scripts/test.sh and the conformance suite use, plus the Bazel tools.
# The Docker engine itself is the host's (NixOS: virtualisation.docker.enable); the shell brings the client.
{
  mkShell,
  toolchain,
  go,
  python3,
  nodejs,
  jdk17,
  curl,
  docker-client,
  iptables,
  bazel-buildtools,
  bazelisk,
  debootstrap,
  pkg-config,
}:
mkShell {
  packages = [
    # cargo, rustc, clippy, rustfmt; rust-src and rust-analyzer for editors.
    (toolchain.override {
      extensions = [
        "rust-src"
        "rust-analyzer"
      ];
    })
    # The conformance matrix's clients, to run one by hand outside its container.
    go
    (python3.withPackages (ps: [
      ps.requests
      ps.pysocks
    ]))
    nodejs # with npm, for global-agent
    jdk17
    curl
    docker-client
    # proxy/tests/*_netns.rs and init-iptables (as root).
    iptables
    # buildifier, buildozer.
    bazel-buildtools
    bazelisk
    # scripts/docker-engine.sh builds the conformance base image with it.
    debootstrap
    pkg-config
  ];
}
