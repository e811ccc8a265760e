# A stand-in for `import nixpkgs { system; overlays; }`: the attributes the flake uses, each a small record of
# how it was called. Overlays are applied the way nixpkgs applies them, so rust-overlay's rust-bin shows up.
#
# A package function asking for an attribute that is not here fails as real callPackage would. The names
# here were checked against nixpkgs' tree; what the stand-in cannot know is whether a package builds.
{
  system,
  overlays ? [ ],
  config ? { },
}:
let
  lib = import ./stub-lib.nix;
  # Every stand-in derivation records the system it was made for.
  stub = attr: extra: import ./stub-derivation.nix attr ({ inherit system; } // extra);

  # A package standing for nixpkgs attribute `attr`.
  pkg = attr: stub attr { };

  buildRustPackageWith =
    toolchain: args:
    let
      vendoring = builtins.filter (a: args ? ${a}) [
        "cargoLock"
        "cargoHash"
        "cargoVendorDir"
        "cargoDeps"
      ];
      name =
        if args ? pname && args ? version then
          "${args.pname}-${args.version}"
        else
          args.name or (throw "buildRustPackage: needs pname and version (or name)");
    in
    if !(args ? src) then
      throw "buildRustPackage ${name}: no src"
    else if builtins.length vendoring != 1 then
      throw "buildRustPackage ${name}: needs exactly one of cargoLock, cargoHash, cargoVendorDir, cargoDeps (got: ${builtins.concatStringsSep ", " vendoring})"
    else if args ? cargoLock && !(builtins.pathExists args.cargoLock.lockFile) then
      throw "buildRustPackage ${name}: cargoLock.lockFile ${toString args.cargoLock.lockFile} does not exist"
    else
      stub name {
        inherit (args) pname version;
        meta = args.meta or { };
        stub = {
          fn = "buildRustPackage";
          inherit args;
          toolchain = {
            cargo = toolchain.cargo.stubAttr;
            rustc = toolchain.rustc.stubAttr;
          };
        };
      };

  base = final: {
    inherit lib system config;
    stdenv.hostPlatform.system = system;

    callPackage =
      fn: args:
      let
        f = if builtins.isFunction fn then fn else import fn;
        wanted = builtins.functionArgs f;
        missing = builtins.filter (n: !wanted.${n} && !(args ? ${n}) && !(final ? ${n})) (
          builtins.attrNames wanted
        );
        result =
          if missing != [ ] then
            throw "callPackage ${toString fn}: function called without required argument(s) ${builtins.concatStringsSep ", " missing}"
          else
            f (builtins.intersectAttrs wanted final // args);
      in
      # As real callPackage (makeOverridable) does.
      if builtins.isAttrs result then
        result
        // {
          override = newArgs: final.callPackage fn (args // newArgs);
          overrideDerivation = _: result;
        }
      else
        result;

    makeRustPlatform =
      { cargo, rustc, ... }:
      {
        buildRustPackage = buildRustPackageWith { inherit cargo rustc; };
      };
    # nixpkgs' own Rust, which lags the toolchain the project pins: the assertions check it is not used.
    rustPlatform.buildRustPackage = buildRustPackageWith {
      cargo = final.cargo;
      rustc = final.rustc;
    };
    cargo = pkg "cargo";
    rustc = pkg "rustc";

    dockerTools.streamLayeredImage =
      args:
      if !(args ? name) then
        throw "dockerTools.streamLayeredImage: no name"
      else
        stub "stream-${args.name}" {
          imageName = args.name;
          imageTag = args.tag or "latest";
          stub = {
            fn = "streamLayeredImage";
            inherit args;
          };
        };

    mkShell =
      args:
      stub (args.name or "nix-shell") {
        stub = {
          fn = "mkShell";
          inherit args;
        };
      };

    runCommand =
      name: env: script:
      stub name {
        stub = {
          fn = "runCommand";
          inherit env script;
        };
      };

    python3 = stub "python3" {
      pkgs = {
        requests = pkg "python3Packages.requests";
        pysocks = pkg "python3Packages.pysocks";
      };
      withPackages =
        f:
        stub "python3-env" {
          stub = {
            fn = "python3.withPackages";
            packages = f final.python3.pkgs;
          };
        };
    };
    python3Packages = final.python3.pkgs;

    jdk17 = stub "jdk17" { home = "/nix/store/00000000000000000000000000000000-jdk17/lib/openjdk"; };
    go = pkg "go";
    nodejs = pkg "nodejs";
    curl = pkg "curl";
    docker-client = pkg "docker-client";
    iptables = pkg "iptables";
    cacert = pkg "cacert";
    openssl = pkg "openssl";
    coreutils = pkg "coreutils";
    bazel-buildtools = pkg "bazel-buildtools";
    bazelisk = pkg "bazelisk";
    debootstrap = pkg "debootstrap";
    pkg-config = pkg "pkg-config";
    nixfmt-tree = pkg "nixfmt-tree";
  };
in
lib.fix (builtins.foldl' (f: overlay: lib.extends overlay f) base overlays)
