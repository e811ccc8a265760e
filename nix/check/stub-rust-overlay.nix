# A stand-in for the rust-overlay flake input: its overlay adds rust-bin, whose toolchains record their
# version and components. Stable versions 1.70.0 to 1.129.9 exist here, so bumping the flake's rustVersion
# needs no change to the stand-in.
let
  stub = import ./stub-derivation.nix;

  toolchain =
    system: version: components:
    stub "rust-bin.stable.${version}" {
      inherit system version components;
      override =
        {
          extensions ? [ ],
          targets ? [ ],
        }:
        toolchain system version (components ++ extensions) // { inherit extensions targets; };
    };

  # rustup's profiles.
  profiles = system: version: {
    minimal = toolchain system version [
      "rustc"
      "cargo"
      "rust-std"
    ];
    default = toolchain system version [
      "rustc"
      "cargo"
      "rust-std"
      "rust-docs"
      "rustfmt"
      "clippy"
    ];
  };

  versions = builtins.concatMap (
    minor: builtins.genList (patch: "1.${toString minor}.${toString patch}") 10
  ) (builtins.genList (i: i + 70) 60);
in
{
  overlays.default = final: prev: {
    rust-bin.stable = builtins.listToAttrs (
      map (version: {
        name = version;
        value = profiles final.system version;
      }) versions
    );
  };
}
