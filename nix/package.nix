# One binary of the Cargo workspace, built as the Dockerfiles build it (`cargo build --release --locked -p NAME`).
# Name, version, description, license and homepage come from the Cargo.toml files, so they are written once.
{
  lib,
  rustPlatform,
  src,
  # The package's Cargo.toml, e.g. ./proxy/Cargo.toml.
  manifest,
}:
let
  package = (lib.importTOML manifest).package;
  # license and repository are set once, for the workspace.
  workspace = (lib.importTOML ../Cargo.toml).workspace.package;
in
rustPlatform.buildRustPackage {
  pname = package.name;
  inherit (package) version;
  inherit src;

  # Every crate is pinned with its checksum in Cargo.lock, and none comes from git: no vendor hash to keep.
  cargoLock.lockFile = ../Cargo.lock;
  cargoBuildFlags = [
    "-p"
    package.name
  ];
  # The workspace's tests run once, in checks.<system>.cargo-test, not in each package.
  doCheck = false;

  meta = {
    inherit (package) description;
    homepage = workspace.repository;
    license = lib.getLicenseFromSpdxId workspace.license;
    mainProgram = package.name;
    platforms = lib.platforms.linux;
  };
}
