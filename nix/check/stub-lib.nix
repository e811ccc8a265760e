# A stand-in for the few nixpkgs `lib` functions the flake calls, written with builtins only (Debian 12's Nix
# 2.8 evaluates it). Each one fails where the real one would on the same arguments, as far as an offline
# check can tell: a fileset member that does not exist, a license id nixpkgs would not know, a program
# without meta.mainProgram.
let
  hasPrefix = prefix: s: builtins.substring 0 (builtins.stringLength prefix) s == prefix;

  genAttrs =
    names: f:
    builtins.listToAttrs (
      map (name: {
        inherit name;
        value = f name;
      }) names
    );

  # A fileset is a list of existing paths here; the real one also filters within directories.
  toFileset =
    what: x:
    if builtins.isAttrs x && x ? _stubFileset then
      x._stubFileset
    else if builtins.typeOf x == "path" then
      (
        if builtins.pathExists x then
          [ x ]
        else
          throw "lib.fileset.${what}: ${toString x} does not exist"
      )
    else
      throw "lib.fileset.${what}: expected a path or a file set, got a ${builtins.typeOf x}";

  licenses = {
    asl20 = {
      spdxId = "Apache-2.0";
      shortName = "asl20";
      fullName = "Apache License 2.0";
    };
  };
in
{
  inherit genAttrs;

  fix =
    f:
    let
      x = f x;
    in
    x;
  extends =
    overlay: f: final:
    let
      prev = f final;
    in
    prev // overlay final prev;

  importTOML = path: builtins.fromTOML (builtins.readFile path);

  fileset = {
    unions = elements: {
      _stubFileset = builtins.concatMap (toFileset "unions") elements;
    };
    toSource =
      { root, fileset }:
      let
        rootString = toString root;
        files = map toString (toFileset "toSource" fileset);
        outside = builtins.filter (f: !(hasPrefix "${rootString}/" f || f == rootString)) files;
      in
      if builtins.typeOf root != "path" then
        throw "lib.fileset.toSource: root must be a path"
      else if outside != [ ] then
        throw "lib.fileset.toSource: ${builtins.head outside} is not under root ${rootString}"
      else
        {
          _type = "stub-source";
          outPath = "/nix/store/00000000000000000000000000000000-source";
          root = rootString;
          inherit files;
        };
  };

  inherit licenses;
  getLicenseFromSpdxId =
    id:
    let
      found = builtins.filter (l: l.spdxId == id) (builtins.attrValues licenses);
    in
    if found == [ ] then
      throw "lib.getLicenseFromSpdxId: the stand-in knows only ${
        builtins.concatStringsSep ", " (map (l: l.spdxId) (builtins.attrValues licenses))
      }, not ${id}"
    else
      builtins.head found;

  platforms.linux = [
    "x86_64-linux"
    "aarch64-linux"
    "i686-linux"
    "armv7l-linux"
    "riscv64-linux"
  ];

  getExe =
    drv:
    if drv ? meta.mainProgram then
      "${drv}/bin/${drv.meta.mainProgram}"
    else
      throw "lib.getExe: ${drv.name or "?"} has no meta.mainProgram";
}
