# The sidecar image, the Nix twin of proxy/Dockerfile: the same binary serves the sidecar container (as uid
# 2102) and transparent mode's init container (`sidecar-proxy init-iptables`, run as root).
# `nix build .#sidecar-proxy-image` gives a script that streams the image: `./result | docker load`.
{
  lib,
  dockerTools,
  cacert,
  iptables,
  sidecar-proxy,
}:
dockerTools.streamLayeredImage {
  name = "sidecar-proxy";
  tag = sidecar-proxy.version;

  # Linked into the image's /bin and /sbin. init-iptables runs iptables-legacy/-nft(-save) by name.
  contents = [
    sidecar-proxy
    iptables
    # tls-out verifies upstream certificates against the system roots and hands them on to the app.
    cacert
  ];
  # iptables-legacy takes its lock at /run/xtables.lock; /tmp for anything that wants scratch space.
  # /usr/local/bin/sidecar-proxy as in the Dockerfile's image: the injector's postStart hook runs that path.
  extraCommands = ''
    mkdir -p run tmp usr/local/bin
    chmod 1777 tmp
    ln -s ${lib.getExe sidecar-proxy} usr/local/bin/sidecar-proxy
  '';

  config = {
    Entrypoint = [ "/usr/local/bin/sidecar-proxy" ];
    # The uid transparent mode's iptables rules exempt (--proxy-uid); the injector runs the sidecar as it.
    User = "2102:2102";
    Env = [
      "PATH=/bin:/sbin"
      "SSL_CERT_FILE=${cacert}/etc/ssl/certs/ca-bundle.crt"
    ];
    # outbound, inbound, admin (metrics and health).
    ExposedPorts = {
      "4140/tcp" = { };
      "4143/tcp" = { };
      "4191/tcp" = { };
    };
  };
}
