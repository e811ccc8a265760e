# Evaluates the flake's `outputs` against stand-ins for its inputs (nixpkgs, rust-overlay) and checks what
# comes out: the output attribute names for both systems, that every check and package is a derivation,
# and the values the project promises (image users and ports, the toolchain, the dev shell's tools, the tests
# the sandbox skips). Run by scripts/check_nix.sh:
#
#   nix-instantiate --eval --strict --json nix/check/eval.nix --argstr root "$PWD"
#
# The answer is { failures = [ ... ]; summary = { ... }; }; failures is empty when all is well. An
# evaluation error in the flake (a missing attribute, a wrong argument) aborts with Nix's own trace.
{ root }:
let
  lib = import ./stub-lib.nix;
  inherit (builtins)
    all
    any
    attrNames
    concatMap
    concatStringsSep
    elem
    filter
    foldl'
    isAttrs
    length
    ;

  rootPath = /. + root;
  # The root Cargo.toml's [workspace] members (proxy, injector, bench, soak, ...).
  workspaceMembers = (builtins.fromTOML (builtins.readFile (rootPath + "/Cargo.toml"))).workspace.members;
  flake = import (rootPath + "/flake.nix");
  systems = [
    "x86_64-linux"
    "aarch64-linux"
  ];

  inputs = {
    nixpkgs = {
      # `import nixpkgs { ... }` imports this file.
      outPath = ./stub-nixpkgs.nix;
      inherit lib;
      legacyPackages = lib.genAttrs systems (system: import ./stub-nixpkgs.nix { inherit system; });
    };
    rust-overlay = import ./stub-rust-overlay.nix;
  };
  # As Nix passes it: the outputs themselves, plus where the source is.
  self = outputs // {
    outPath = root;
    inherit inputs;
  };
  outputs = flake.outputs (inputs // { inherit self; });

  manifest = path: builtins.fromTOML (builtins.readFile (rootPath + path));
  workspace = (manifest "/Cargo.toml").workspace.package;
  versionOf = name: (manifest "/${name}/Cargo.toml").package.version;

  # ---- helpers ----
  hasPath =
    path: set:
    (foldl'
      (
        acc: key:
        if acc.ok && isAttrs acc.value && acc.value ? ${key} then
          {
            ok = true;
            value = acc.value.${key};
          }
        else
          {
            ok = false;
            value = null;
          }
      )
      {
        ok = true;
        value = set;
      }
      path
    ).ok;
  hasPrefix = prefix: s: builtins.substring 0 (builtins.stringLength prefix) s == prefix;
  hasInfix =
    needle: s:
    let
      n = builtins.stringLength needle;
      go = i: i + n <= builtins.stringLength s && (builtins.substring i n s == needle || go (i + 1));
    in
    go 0;
  isDerivation = x: isAttrs x && (x.type or null) == "derivation";
  sorted = builtins.sort builtins.lessThan;
  show = builtins.toJSON;
  # Sub-list test: `needle` appears in `list` as consecutive elements.
  containsRun =
    needle: list:
    let
      n = length needle;
      go = i: i + n <= length list && (builtins.genList (j: builtins.elemAt list (i + j)) n == needle || go (i + 1));
    in
    go 0;
  stubAttrs = list: map (p: p.stubAttr or "?") list;

  # { what, ok } -> failure message list
  failed = checks: map (c: c.what) (filter (c: !c.ok) checks);
  expect = what: ok: { inherit what ok; };
  expectEq =
    what: actual: expected:
    {
      what = "${what}: expected ${show expected}, got ${show actual}";
      ok = actual == expected;
    };

  # ---- the flake file itself ----
  flakeChecks =
    let
      formals = builtins.functionArgs flake.outputs;
    in
    [
      (expect "flake.nix has only description, inputs, outputs, nixConfig at top level (has ${show (attrNames flake)})" (
        all (k: elem k [
          "description"
          "inputs"
          "outputs"
          "nixConfig"
        ]) (attrNames flake)
      ))
      (expect "inputs.nixpkgs.url is a github:NixOS/nixpkgs branch (is ${show (flake.inputs.nixpkgs.url or null)})" (
        hasPrefix "github:NixOS/nixpkgs/" (flake.inputs.nixpkgs.url or "")
      ))
      (expectEq "inputs.rust-overlay.url" (flake.inputs.rust-overlay.url or null) "github:oxalica/rust-overlay")
      (expectEq "inputs.rust-overlay.inputs.nixpkgs.follows" (
        flake.inputs.rust-overlay.inputs.nixpkgs.follows or null
      ) "nixpkgs")
      (expectEq "the inputs" (sorted (attrNames (flake.inputs or { }))) [
        "nixpkgs"
        "rust-overlay"
      ])
      (expect "outputs takes self and the inputs by name (takes ${show (attrNames formals)})" (
        all (k: elem k [
          "self"
          "nixpkgs"
          "rust-overlay"
        ]) (attrNames formals)
      ))
    ];

  # ---- the output attribute names: a typo anywhere here is an unknown or a missing name ----
  expectedNames = {
    packages = [
      "default"
      "sidecar-injector"
      "sidecar-injector-image"
      "sidecar-proxy"
      "sidecar-proxy-image"
    ];
    devShells = [ "default" ];
    checks = [
      "cargo-test"
      "clippy"
      "fmt"
    ];
  };
  structureChecks = [
    (expectEq "the flake's outputs" (sorted (attrNames outputs)) [
      "checks"
      "devShells"
      "formatter"
      "packages"
    ])
  ]
  ++ concatMap (
    output:
    [
      (expectEq "${output}'s systems" (sorted (attrNames (outputs.${output} or { }))) (sorted systems))
    ]
    ++ concatMap (
      system:
      if output == "formatter" then
        [
          (expect "formatter.${system} is a derivation" (isDerivation (outputs.formatter.${system} or null)))
        ]
      else
        let
          set = outputs.${output}.${system} or { };
        in
        [ (expectEq "${output}.${system}" (sorted (attrNames set)) expectedNames.${output}) ]
        ++ map (
          name: expect "${output}.${system}.${name} is a derivation" (isDerivation set.${name})
        ) (attrNames set)
    ) systems
  ) (attrNames expectedNames ++ [ "formatter" ]);

  # ---- the values, for one system ----
  valueChecks =
    system:
    let
      at = "(${system})";
      P = outputs.packages.${system};
      C = outputs.checks.${system};
      shell = outputs.devShells.${system}.default;
      proxy = P.sidecar-proxy;
      injector = P.sidecar-injector;

      rustPackageChecks =
        name: drv:
        let
          args = drv.stub.args or { };
        in
        [
          (expectEq "${name} ${at} is made by" (drv.stub.fn or null) "buildRustPackage")
          (expect "${name} ${at} is built with rust-overlay's rust-bin.stable toolchain, not nixpkgs' rustc (got ${show (drv.stub.toolchain or null)})" (
            drv.stub.toolchain or { } == {
              cargo = toolchainAttr;
              rustc = toolchainAttr;
            }
          ))
          (expectEq "${name} ${at} cargoLock.lockFile" (toString (args.cargoLock.lockFile or "")) "${root}/Cargo.lock")
          (expectEq "${name} ${at} src root" (args.src.root or null) root)
          # Every member of the Cargo workspace: Cargo reads each member's manifest before it builds any.
          (expect "${name} ${at} src holds the workspace (holds ${show (args.src.files or null)})" (
            all (f: elem "${root}/${f}" (args.src.files or [ ])) (
              [
                "Cargo.toml"
                "Cargo.lock"
              ]
              ++ workspaceMembers
            )
          ))
        ];

      binaryChecks =
        name: drv:
        rustPackageChecks name drv
        ++ [
          (expectEq "${name} ${at} pname" (drv.stub.args.pname or null) name)
          (expectEq "${name} ${at} version (from its Cargo.toml)" (drv.stub.args.version or null) (
            versionOf (if name == "sidecar-proxy" then "proxy" else "injector")
          ))
          (expectEq "${name} ${at} cargoBuildFlags" (drv.stub.args.cargoBuildFlags or null) [
            "-p"
            name
          ])
          (expectEq "${name} ${at} doCheck" (drv.stub.args.doCheck or true) false)
          (expectEq "${name} ${at} meta.mainProgram" (drv.meta.mainProgram or null) name)
        ];

      image = drv: drv.stub.args or { };
      proxyImage = image P.sidecar-proxy-image;
      injectorImage = image P.sidecar-injector-image;

      shellArgs = shell.stub.args or { };
      shellPackages =
        (shellArgs.packages or [ ]) ++ (shellArgs.nativeBuildInputs or [ ]) ++ (shellArgs.buildInputs or [ ]);
      pythons = filter (p: (p.stub.fn or null) == "python3.withPackages") shellPackages;
      shellToolchains = filter (p: hasPrefix "rust-bin.stable." (p.stubAttr or "")) shellPackages;

      cargoTest = C.cargo-test.stub.args or { };
      clippyArgs = C.clippy.stub.args or { };
      fmtScript = C.fmt.stub.script or "";

      # Every derivation reachable in this system's outputs was made for this system.
      drvsOf = set: filter isDerivation (builtins.attrValues set);
      systemChecks = map (
        drv: expectEq "${drv.name} ${at} system" (drv.system or null) system
      ) (drvsOf P ++ drvsOf C ++ [ shell ] ++ shellToolchains);
    in
    systemChecks
    ++ binaryChecks "sidecar-proxy" proxy
    ++ binaryChecks "sidecar-injector" injector
    ++ [
      (expect "packages.${system}.default is sidecar-proxy" (P.default.outPath == proxy.outPath))

      (expectEq "sidecar-proxy-image ${at} is made by" (P.sidecar-proxy-image.stub.fn or null) "streamLayeredImage")
      (expectEq "sidecar-proxy-image ${at} name" (proxyImage.name or null) "sidecar-proxy")
      (expectEq "sidecar-proxy-image ${at} tag" (proxyImage.tag or null) (versionOf "proxy"))
      (expectEq "sidecar-proxy-image ${at} config.User" (proxyImage.config.User or null) "2102:2102")
      (expectEq "sidecar-proxy-image ${at} config.ExposedPorts" (attrNames (proxyImage.config.ExposedPorts or { })) [
        "4140/tcp"
        "4143/tcp"
        "4191/tcp"
      ])
      (expectEq "sidecar-proxy-image ${at} config.Entrypoint" (proxyImage.config.Entrypoint or null) [
        "/usr/local/bin/sidecar-proxy"
      ])
      (expect "sidecar-proxy-image ${at} links /usr/local/bin/sidecar-proxy, the path of the injector's postStart hook" (
        hasInfix "ln -s ${proxy}/bin/sidecar-proxy usr/local/bin/sidecar-proxy" (proxyImage.extraCommands or "")
      ))
      (expect "sidecar-proxy-image ${at} contents hold sidecar-proxy and iptables (hold ${show (stubAttrs (proxyImage.contents or [ ]))})" (
        elem proxy.outPath (map (p: p.outPath) (proxyImage.contents or [ ]))
        && elem "iptables" (stubAttrs (proxyImage.contents or [ ]))
      ))
      (expect "sidecar-proxy-image ${at} PATH reaches the iptables tools (Env ${show (proxyImage.config.Env or null)})" (
        any (e: hasPrefix "PATH=" e && hasInfix "/sbin" e && hasInfix "/bin" e) (proxyImage.config.Env or [ ])
      ))
      (expect "sidecar-proxy-image ${at} carries the system roots tls-out verifies upstreams against (contents ${show (stubAttrs (proxyImage.contents or [ ]))}, Env ${show (proxyImage.config.Env or null)})" (
        elem "cacert" (stubAttrs (proxyImage.contents or [ ]))
        && any (e: hasPrefix "SSL_CERT_FILE=" e && hasInfix "cacert" e) (proxyImage.config.Env or [ ])
      ))

      (expectEq "sidecar-injector-image ${at} is made by" (P.sidecar-injector-image.stub.fn or null) "streamLayeredImage")
      (expectEq "sidecar-injector-image ${at} name" (injectorImage.name or null) "sidecar-injector")
      (expectEq "sidecar-injector-image ${at} config.User" (injectorImage.config.User or null) "65532:65532")
      (expectEq "sidecar-injector-image ${at} config.ExposedPorts" (attrNames (injectorImage.config.ExposedPorts or { })) [
        "8443/tcp"
      ])
      (expectEq "sidecar-injector-image ${at} Entrypoint ++ Cmd" (
        (injectorImage.config.Entrypoint or [ ]) ++ (injectorImage.config.Cmd or [ ])
      ) [ "${injector}/bin/sidecar-injector" "serve" ])
      (expectEq "sidecar-injector-image ${at} Entrypoint (deploy/deployment.yaml passes args: [serve])" (
        injectorImage.config.Entrypoint or null
      ) [ "${injector}/bin/sidecar-injector" ])
      (expect "sidecar-injector-image ${at} contents hold sidecar-injector and coreutils for the preStop `sleep` (hold ${show (stubAttrs (injectorImage.contents or [ ]))})" (
        elem injector.outPath (map (p: p.outPath) (injectorImage.contents or [ ]))
        && elem "coreutils" (stubAttrs (injectorImage.contents or [ ]))
      ))

      (expectEq "devShells.${system}.default is made by" (shell.stub.fn or null) "mkShell")
      (expect "devShells.${system}.default has go, jdk17, nodejs, curl, docker-client, iptables, bazel-buildtools, bazelisk, debootstrap, pkg-config (has ${show (stubAttrs shellPackages)})" (
        all (a: elem a (stubAttrs shellPackages)) [
          "go"
          "jdk17"
          "nodejs"
          "curl"
          "docker-client"
          "iptables"
          "bazel-buildtools"
          "bazelisk"
          "debootstrap"
          "pkg-config"
        ]
      ))
      (expect "devShells.${system}.default has one python3 with requests and pysocks (has ${show (map (p: stubAttrs p.stub.packages) pythons)})" (
        length pythons == 1
        && all (a: elem a (stubAttrs (builtins.head pythons).stub.packages)) [
          "python3Packages.requests"
          "python3Packages.pysocks"
        ]
      ))
      (expect "devShells.${system}.default has the pinned Rust toolchain with cargo, rustc, clippy, rustfmt (has ${show (map (t: t.stubAttr) shellToolchains)})" (
        length shellToolchains == 1
        && (builtins.head shellToolchains).stubAttr == toolchainAttr
        && all (c: elem c (builtins.head shellToolchains).components) [
          "cargo"
          "rustc"
          "clippy"
          "rustfmt"
        ]
      ))

      (expectEq "formatter.${system}" (outputs.formatter.${system}.stubAttr or null) "nixfmt-tree")
    ]
    ++ rustPackageChecks "checks.cargo-test" C.cargo-test
    ++ [
      (expect "checks.cargo-test ${at} runs the tests (doCheck)" (cargoTest.doCheck or true))
      (expect "checks.cargo-test ${at} cargoTestFlags test the workspace without sidecar-conformance (are ${show (cargoTest.cargoTestFlags or null)})" (
        containsRun [ "--workspace" ] (cargoTest.cargoTestFlags or [ ])
        && containsRun [
          "--exclude"
          "sidecar-conformance"
        ] (cargoTest.cargoTestFlags or [ ])
      ))
      (expect "checks.cargo-test ${at} checkFlags are --skip=NAME only (are ${show (cargoTest.checkFlags or null)})" (
        cargoTest.checkFlags or [ ] != [ ] && all (f: hasPrefix "--skip=" f) (cargoTest.checkFlags or [ ])
      ))
      (expect "checks.cargo-test ${at} src holds deploy/ (the injector's manifest tests read it)" (
        elem "${root}/deploy" (cargoTest.src.files or [ ])
      ))
      (expect "checks.cargo-test ${at} points proxy/tests/curl.rs at Nix's curl" (
        hasInfix "proxy/tests/curl.rs" (cargoTest.postPatch or "")
        && hasInfix "/usr/bin/curl" (cargoTest.postPatch or "")
        && hasInfix "-curl/bin/curl" (cargoTest.postPatch or "")
      ))
    ]
    ++ rustPackageChecks "checks.clippy" C.clippy
    ++ [
      (expect "checks.clippy ${at} runs `cargo clippy --workspace --all-targets ... -- -D warnings`" (
        hasInfix "cargo clippy --workspace --all-targets" (clippyArgs.buildPhase or "")
        && hasInfix "-- -D warnings" (clippyArgs.buildPhase or "")
      ))
      (expectEq "checks.fmt ${at} is made by" (C.fmt.stub.fn or null) "runCommand")
      (expect "checks.fmt ${at} runs `cargo fmt --all -- --check` with the pinned toolchain" (
        hasInfix "cargo fmt --all -- --check" fmtScript
        && elem toolchainAttr (stubAttrs (C.fmt.stub.env.nativeBuildInputs or [ ]))
      ))
    ];

  # The toolchain the packages are built with, read from the x86_64 proxy package.
  toolchainAttr = outputs.packages.x86_64-linux.sidecar-proxy.stub.toolchain.rustc or "?";
  toolchainVersion = builtins.substring (builtins.stringLength "rust-bin.stable.") 100 toolchainAttr;
  toolchainChecks = [
    (expect "the toolchain is a rust-overlay stable version (is ${toolchainAttr})" (
      hasPrefix "rust-bin.stable.1." toolchainAttr
    ))
    (expect "the toolchain ${toolchainVersion} is at least the workspace's rust-version ${workspace.rust-version}" (
      builtins.compareVersions toolchainVersion workspace.rust-version >= 0
    ))
  ];

  # No flake.lock is committed yet (pinning needs nixpkgs' narHash, which only a download gives): the first
  # `nix flake lock` where GitHub is reachable writes it. Once there, it must pin both inputs.
  lockPath = rootPath + "/flake.lock";
  lock = builtins.fromJSON (builtins.readFile lockPath);
  lockChecks =
    if !(builtins.pathExists lockPath) then
      [ ]
    else
      let
        rootInputs = lock.nodes.${lock.root}.inputs or { };
        locked = name: lock.nodes.${rootInputs.${name} or "?"}.locked or { };
      in
      map (
        name:
        expect "flake.lock pins ${name} with a rev and a narHash" (
          (locked name) ? rev && (locked name) ? narHash
        )
      ) [
        "nixpkgs"
        "rust-overlay"
      ]
      ++ [
        (expectEq "flake.lock: rust-overlay's nixpkgs follows" (
          lock.nodes.${rootInputs.rust-overlay or "?"}.inputs.nixpkgs or null
        ) [ "nixpkgs" ])
      ];

  structureFailures = failed (flakeChecks ++ lockChecks ++ structureChecks);
  valueFailures = failed (toolchainChecks ++ concatMap valueChecks systems);

  x86 = outputs.packages.x86_64-linux;
  summary = {
    nixpkgs = flake.inputs.nixpkgs.url;
    lock =
      if builtins.pathExists lockPath then
        "flake.lock pins nixpkgs ${lock.nodes.${lock.nodes.${lock.root}.inputs.nixpkgs}.locked.rev}"
      else
        "no flake.lock yet (the first `nix flake lock` writes it)";
    toolchain = toolchainVersion;
    packages = builtins.mapAttrs (_: drv: drv.name) x86;
    proxyImage = {
      inherit (x86.sidecar-proxy-image.stub.args.config) User Entrypoint;
      ports = attrNames x86.sidecar-proxy-image.stub.args.config.ExposedPorts;
      contents = stubAttrs x86.sidecar-proxy-image.stub.args.contents;
    };
    injectorImage = {
      inherit (x86.sidecar-injector-image.stub.args.config) User Entrypoint Cmd;
      ports = attrNames x86.sidecar-injector-image.stub.args.config.ExposedPorts;
      contents = stubAttrs x86.sidecar-injector-image.stub.args.contents;
    };
    devShell = stubAttrs outputs.devShells.x86_64-linux.default.stub.args.packages;
    checks = attrNames outputs.checks.x86_64-linux;
    skippedTests = map (f: builtins.substring (builtins.stringLength "--skip=") 1000 f) outputs.checks.x86_64-linux.cargo-test.stub.args.checkFlags;
  };
in
if structureFailures != [ ] then
  {
    failures = structureFailures;
    summary = null;
  }
else
  # Forces every value of every output, so an error anywhere in them surfaces here.
  builtins.deepSeq outputs {
    failures = valueFailures;
    inherit summary;
  }
