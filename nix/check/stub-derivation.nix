# A stand-in derivation: enough of one for the flake's plumbing (interpolation, lib.getExe, `nix flake
# check`'s "is this a derivation"), and a record of what it was made from for the assertions to read back.
# `stubAttr` names the nixpkgs attribute it stands for; `stub` holds the call's arguments.
attr: extra:
let
  self = {
    type = "derivation";
    name = attr;
    stubAttr = attr;
    outPath = "/nix/store/00000000000000000000000000000000-${attr}";
    drvPath = "/nix/store/00000000000000000000000000000000-${attr}.drv";
    meta = { };
    overrideAttrs = f: self // (if builtins.isFunction f then f self else f);
  }
  // extra;
in
self
