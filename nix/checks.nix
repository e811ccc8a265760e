# `nix flake check`: the cargo tests that run in Nix's build sandbox, clippy and rustfmt, with the same
# toolchain and flags as scripts/test.sh. The sandbox has a loopback interface and nothing else, no root and
# no Docker, so two kinds of tests stay out (see cargo-test).
{
  lib,
  runCommand,
  curl,
  jdk17,
  openssl,
  rustPlatform,
  src,
  toolchain,
}:
let
  inherit ((lib.importTOML ../proxy/Cargo.toml).package) version;

  # Tests that create network namespaces and iptables rules, which needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN):
  # every #[test] in proxy/tests/*_netns.rs (iptables_netns, transparent_netns, open_proxy_netns). They fail, not
  # skip, without root, so a new one that is not listed here fails this check loudly rather than passing.
  # scripts/check_nix.sh checks this list against those files.
  rootOnlyTests = [
    "auto_backend_applies_once_reruns_identically_and_dry_run_changes_nothing"
    "legacy_backend_converges_and_auto_stays_on_it"
    "transparent_mode_relays_and_records_both_directions_with_no_app_settings"
    "transparent_mode_with_tls_out_records_the_apps_https"
    "transparent_mode_answers_the_apps_calls_from_a_capture_once_the_dependency_is_gone"
    "another_pod_cannot_use_the_forward_listener_but_reaches_inbound_and_admin"
  ];

  workspace = {
    inherit version src;
    cargoLock.lockFile = ../Cargo.lock;
  };
in
{
  # What scripts/test.sh runs before the conformance matrix, less sidecar-conformance: its integration tests
  # drive Docker containers, and its unit tests only check the matrix's own bookkeeping.
  cargo-test = rustPlatform.buildRustPackage (
    workspace
    // {
      pname = "sidecar-cargo-test";
      # Built once in release and reused by `cargo test --release`.
      cargoBuildFlags = [
        "--workspace"
        "--exclude"
        "sidecar-conformance"
      ];
      cargoTestFlags = [
        "--workspace"
        "--exclude"
        "sidecar-conformance"
      ];
      checkFlags = map (name: "--skip=${name}") rootOnlyTests;
      # The webhook's TLS versions (injector) and the capture CA and trust files (proxy/tests/tls_out_ca.rs)
      # are checked with OpenSSL's own command-line tool; the Java trust store with keytool and a JVM.
      nativeCheckInputs = [
        openssl
        jdk17
      ];
      # proxy/tests/curl.rs runs the system's /usr/bin/curl, which the sandbox does not have.
      postPatch = ''
        substituteInPlace proxy/tests/curl.rs \
          --replace-fail '"/usr/bin/curl"' '"${curl}/bin/curl"'
      '';
      doCheck = true;
    }
  );

  # scripts/test.sh's `cargo clippy --workspace --all-targets --locked -- -D warnings`.
  clippy = rustPlatform.buildRustPackage (
    workspace
    // {
      pname = "sidecar-clippy";
      nativeBuildInputs = [ toolchain ];
      buildPhase = ''
        runHook preBuild
        cargo clippy --workspace --all-targets --frozen -- -D warnings
        runHook postBuild
      '';
      doCheck = false;
      installPhase = "touch $out";
    }
  );

  # scripts/test.sh's `cargo fmt --all -- --check`; rustfmt needs no dependencies, so no vendoring either.
  fmt = runCommand "sidecar-fmt-${version}" { nativeBuildInputs = [ toolchain ]; } ''
    export CARGO_HOME=$TMPDIR/cargo-home
    cd ${src}
    cargo fmt --all -- --check
    touch $out
  '';
}
