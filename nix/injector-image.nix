# The webhook image, the Nix twin of injector/Dockerfile.
# `nix build .#sidecar-injector-image` gives a script that streams the image: `./result | docker load`.
{
  lib,
  dockerTools,
  coreutils,
  sidecar-injector,
}:
dockerTools.streamLayeredImage {
  name = "sidecar-injector";
  tag = sidecar-injector.version;

  # coreutils: deploy/deployment.yaml's preStop hook runs `sleep 5`.
  contents = [
    sidecar-injector
    coreutils
  ];

  config = {
    # `serve` as the command, not part of the entrypoint, as in the Dockerfile: deploy/deployment.yaml passes
    # `args: ["serve"]`, and `docker run IMAGE inject ...` reaches the offline subcommands.
    Entrypoint = [ (lib.getExe sidecar-injector) ];
    Cmd = [ "serve" ];
    # Any non-root uid works (the webhook listens on 8443); deploy/deployment.yaml runs it as 65532.
    User = "65532:65532";
    Env = [ "PATH=/bin" ];
    ExposedPorts = {
      "8443/tcp" = { };
    };
  };
}
