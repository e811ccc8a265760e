# What scripts/check_nix.sh evaluates: eval.nix's verdict as text. Failures become an evaluation error (exit
# status 1, one line per failure); success prints a summary on stderr and returns, as JSON, the names of the
# tests checks.cargo-test skips, which the script compares with proxy/tests/.
{ root }:
let
  result = import ./eval.nix { inherit root; };
  s = result.summary;
  join = builtins.concatStringsSep;
  list = xs: join ", " xs;
  summaryText = join "\n" [
    "flake outputs evaluated against the stand-ins, for x86_64-linux and aarch64-linux:"
    "  nixpkgs:   ${s.nixpkgs}; Rust ${s.toolchain} from rust-overlay; ${s.lock}"
    "  packages:  ${list (builtins.attrNames s.packages)}"
    "  proxy image:    user ${s.proxyImage.User}, ports ${list s.proxyImage.ports}, entrypoint ${list s.proxyImage.Entrypoint}, contents ${list s.proxyImage.contents}"
    "  injector image: user ${s.injectorImage.User}, ports ${list s.injectorImage.ports}, entrypoint ${list s.injectorImage.Entrypoint}, cmd ${list s.injectorImage.Cmd}, contents ${list s.injectorImage.contents}"
    "  devShell:  ${list s.devShell}"
    "  checks:    ${list s.checks}; cargo-test skips ${list s.skippedTests}"
  ];
in
if result.failures != [ ] then
  throw "the flake does not match what the project promises:\n${
    join "\n" (map (f: "- ${f}") result.failures)
  }"
else
  builtins.trace summaryText s.skippedTests
