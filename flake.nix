# sidecar-proxy and sidecar-injector with Nix:
#   nix build                    the proxy binary (.#sidecar-proxy; also .#sidecar-injector)
#   nix build .#sidecar-proxy-image && ./result | docker load    (also .#sidecar-injector-image)
#   nix develop                  Rust, Go, Python, Node, JDK 17, curl, docker, iptables, Bazel tools
#   nix flake check              the cargo tests that fit Nix's sandbox, clippy, rustfmt
#   nix fmt                      formats the Nix files
# No flake.lock is committed yet: the first `nix flake lock` (or any command above) on a machine that reaches
# GitHub writes one; commit it. scripts/check_nix.sh checks this flake offline, without nixpkgs.
{
  description = "sidecar-proxy and sidecar-injector: a Kubernetes traffic-capture sidecar and the admission webhook that adds it";

  inputs = {
    # The Rust toolchain comes from rust-overlay, so this branch supplies everything else (Go, Python, Node,
    # the JDK, Docker's client, iptables, dockerTools). A stable nixos-YY.MM branch works the same.
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    # Cargo.lock needs rustc >= 1.89 (kube 5 declares it), more than nixos-25.05's rustc 1.86, and clippy's
    # `-D warnings` changes meaning with every release: the toolchain is pinned to the one the Dockerfiles
    # (rust:1.95) and CI use, whatever rustc the nixpkgs branch has.
    rust-overlay = {
      url = "github:oxalica/rust-overlay";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    {
      self,
      nixpkgs,
      rust-overlay,
    }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      rustVersion = "1.95.0";

      perSystem =
        system:
        let
          pkgs = import nixpkgs {
            inherit system;
            overlays = [ rust-overlay.overlays.default ];
          };
          inherit (pkgs) lib;
          # The default profile: rustc, cargo, clippy, rustfmt, rust-std.
          toolchain = pkgs.rust-bin.stable.${rustVersion}.default;
          rustPlatform = pkgs.makeRustPlatform {
            cargo = toolchain;
            rustc = toolchain;
          };
          # Only what Cargo reads: editing docs/, Bazel or Docker files rebuilds nothing. deploy/ is read by the
          # injector's manifest tests.
          src = lib.fileset.toSource {
            root = ./.;
            fileset = lib.fileset.unions [
              ./Cargo.toml
              ./Cargo.lock
              ./proxy
              ./injector
              ./conformance
              ./bench
              ./soak
              ./fuzz
              ./deploy
            ];
          };
          callWorkspace = file: args: pkgs.callPackage file ({ inherit rustPlatform src; } // args);

          sidecar-proxy = callWorkspace ./nix/package.nix { manifest = ./proxy/Cargo.toml; };
          sidecar-injector = callWorkspace ./nix/package.nix { manifest = ./injector/Cargo.toml; };
        in
        {
          packages = {
            inherit sidecar-proxy sidecar-injector;
            sidecar-proxy-image = pkgs.callPackage ./nix/proxy-image.nix { inherit sidecar-proxy; };
            sidecar-injector-image = pkgs.callPackage ./nix/injector-image.nix { inherit sidecar-injector; };
            default = sidecar-proxy;
          };

          # Plain import, not callPackage: callPackage would add `override` next to the checks, and
          # `nix flake check` wants nothing but derivations there.
          checks = import ./nix/checks.nix {
            inherit (pkgs) lib runCommand curl jdk17 openssl;
            inherit rustPlatform src toolchain;
          };

          devShells.default = pkgs.callPackage ./nix/shell.nix { inherit toolchain; };

          formatter = pkgs.nixfmt-tree;
        };

      bySystem = nixpkgs.lib.genAttrs systems perSystem;
      forAllSystems = output: nixpkgs.lib.genAttrs systems (system: output bySystem.${system});
    in
    {
      packages = forAllSystems (s: s.packages);
      checks = forAllSystems (s: s.checks);
      devShells = forAllSystems (s: s.devShells);
      formatter = forAllSystems (s: s.formatter);
    };
}
