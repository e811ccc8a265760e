//! The injector's security defaults (docs/security.md), each proven here:
//!
//! - what it adds to a pod runs unprivileged: the sidecar non-root, read-only root filesystem, no
//!   privilege escalation, every capability dropped, the runtime's seccomp filter; transparent mode's
//!   init container is root with NET_ADMIN and NET_RAW and nothing more;
//! - the patch only adds (containers, init containers, emptyDir volumes, marks, and with tls-out the
//!   capture CA's Secret and any upstream CA ConfigMap, read-only in the sidecar alone) and never
//!   touches what would widen the pod's privileges (host namespaces, pod security context, service
//!   account);
//! - the sidecar keeps its loopback-only forward listener: the injector never sets a bind address;
//! - the injector's image runs as a non-root user;
//! - the webhook speaks TLS 1.2 and 1.3 and refuses 1.0 and 1.1, proven with OpenSSL's own client
//!   against the real binary.
//!
//! The deploy/ manifests (RBAC, the injector's own pod) are checked in deploy_manifests.rs.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, SecurityContext};
use serde_json::{json, Value};
use sidecar_injector::containers::{SidecarOptions, CAPTURE_VOLUME, INIT_NAME, SIDECAR_NAME};
use sidecar_injector::review::{admit, Admission};
use sidecar_injector::tls_out::{CA_VOLUME, TRUST_VOLUME, UPSTREAM_CA_VOLUME};

const IMAGE: &str = "registry.example.com/sidecar-proxy:0.1.0";
const BIN: &str = env!("CARGO_BIN_EXE_sidecar-injector");

// ---------------------------------------------------------------------------------------------------------
// What a pod gets

/// Every mode and protocol the spec allows, with and without the options that add more to the pod.
const MODES: &[&[(&str, &str)]] = &[
    &[],
    &[("proxy-type", "transparent")],
    &[
        ("proxy-type", "transparent"),
        ("ignore-inbound-ports", "22,8000-8100"),
        ("ignore-outbound-ports", "5432"),
    ],
    &[
        ("proxy-type", "transparent"),
        ("proxy-in-port", "15006"),
        ("proxy-out-port", "15001"),
    ],
    &[("proxy-type", "reverse"), ("proxy-protocol", "tcp")],
    &[("proxy-type", "reverse"), ("proxy-protocol", "http")],
    &[("proxy-type", "reverse"), ("proxy-protocol", "socks")],
    &[("proxy-type", "forward"), ("proxy-protocol", "http")],
    &[("proxy-type", "forward"), ("proxy-protocol", "socks")],
    &[
        ("proxy-type", "forward"),
        ("proxy-protocol", "http"),
        ("configure-app", "true"),
    ],
    &[("proxy-type", "dual"), ("proxy-protocol", "http")],
    &[("proxy-type", "dual"), ("proxy-protocol", "socks")],
    &[("proxy-type", "dual"), ("proxy-protocol", "tcp:http")],
    &[
        ("proxy-type", "dual"),
        ("proxy-protocol", "tcp:socks"),
        ("configure-app", "true"),
        ("proxy-out-port", "11000"),
    ],
    &[("tls-out", "true")],
    // The native layout: the sidecar among the init containers, locked down the same.
    &[("native-sidecar", "true")],
    &[
        ("native-sidecar", "true"),
        ("proxy-type", "dual"),
        ("proxy-protocol", "http"),
        ("configure-app", "true"),
        ("tls-out", "true"),
    ],
    &[
        ("proxy-type", "transparent"),
        ("configure-app", "true"),
        ("tls-out", "true"),
    ],
    &[
        ("proxy-type", "forward"),
        ("proxy-protocol", "http"),
        ("tls-out", "true"),
        ("tls-out-secret", "shop-capture-ca"),
    ],
    &[
        ("proxy-type", "forward"),
        ("proxy-protocol", "socks"),
        ("configure-app", "true"),
        ("tls-out", "true"),
        ("tls-out-upstream-ca", "internal-ca"),
    ],
    &[
        ("proxy-type", "transparent"),
        ("tls-out", "true"),
        ("tls-out-upstream-ca", "internal-ca"),
    ],
    &[
        ("proxy-type", "dual"),
        ("proxy-protocol", "tcp:http"),
        ("configure-app", "true"),
        ("tls-out", "true"),
        ("tls-out-exclude", "*.bank.example"),
    ],
];

fn has_tls_out(annotations: &[(&str, &str)]) -> bool {
    annotations.contains(&("tls-out", "true"))
}

/// A pod as a user writes it: two app containers (one already with some env), a pod-level security
/// context of its own, the default service account.
fn pod(annotations: &[(&str, &str)]) -> Pod {
    let mut all = vec![("inject", "true")];
    all.extend_from_slice(annotations);
    let annotations: BTreeMap<String, String> = all
        .iter()
        .map(|(k, v)| (format!("sidecar.speedscale.com/{k}"), (*v).to_owned()))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
        "spec": {
            "securityContext": {"fsGroup": 3000},
            "containers": [
                {"name": "web", "image": "registry.example.com/shop/web:1.4.2",
                 "env": [{"name": "LOG_LEVEL", "value": "info"}]},
                {"name": "worker", "image": "registry.example.com/shop/worker:1.4.2"}
            ]
        }
    }))
    .unwrap()
}

struct Injected {
    original: Value,
    patch: Value,
    patched: Pod,
}

fn inject(annotations: &[(&str, &str)]) -> Injected {
    let pod = pod(annotations);
    let patch = match admit(&pod, &SidecarOptions::new(IMAGE)) {
        Ok(Admission::Patched(patch)) => patch,
        other => panic!("{annotations:?}: not injected: {other:?}"),
    };
    let original = serde_json::to_value(&pod).unwrap();
    let mut patched = original.clone();
    json_patch::patch(&mut patched, &patch).expect("the patch applies");
    Injected {
        original,
        patch: serde_json::to_value(&patch).unwrap(),
        patched: serde_json::from_value(patched).unwrap(),
    }
}

fn container<'a>(containers: &'a [Container], name: &str) -> Option<&'a Container> {
    containers.iter().find(|c| c.name == name)
}

/// The sidecar, an ordinary container (classic layout) or an init container (native).
fn sidecar_of(spec: &PodSpec) -> &Container {
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .find(|c| c.name == SIDECAR_NAME)
        .expect("the sidecar")
}

fn security(container: &Container) -> &SecurityContext {
    container
        .security_context
        .as_ref()
        .unwrap_or_else(|| panic!("{}: no securityContext", container.name))
}

fn seccomp_type(security: &SecurityContext) -> Option<&str> {
    security.seccomp_profile.as_ref().map(|p| p.type_.as_str())
}

/// What every added container has, root or not: nothing gained on exec, a root filesystem it cannot
/// change, every capability the runtime grants by default dropped, not privileged, and the runtime's
/// seccomp filter.
fn assert_locked_down(container: &Container, what: &str) {
    let security = security(container);
    assert_eq!(security.allow_privilege_escalation, Some(false), "{what}");
    assert_eq!(security.read_only_root_filesystem, Some(true), "{what}");
    assert_ne!(security.privileged, Some(true), "{what}");
    assert!(security.proc_mount.is_none(), "{what}: procMount");
    let capabilities = security.capabilities.as_ref().expect("capabilities");
    assert_eq!(
        capabilities.drop.as_deref(),
        Some(&["ALL".to_owned()][..]),
        "{what}: drop ALL"
    );
    assert_eq!(seccomp_type(security), Some("RuntimeDefault"), "{what}");
}

#[test]
fn the_sidecar_runs_non_root_read_only_with_no_capabilities_in_every_mode() {
    for annotations in MODES {
        let injected = inject(annotations);
        let spec = injected.patched.spec.as_ref().unwrap();
        let sidecar = sidecar_of(spec);
        let what = format!("sidecar for {annotations:?}");
        assert_locked_down(sidecar, &what);
        let security = security(sidecar);
        assert_eq!(security.run_as_non_root, Some(true), "{what}");
        let uid = security.run_as_user.expect("an explicit uid");
        let gid = security.run_as_group.expect("an explicit gid");
        assert!(uid != 0 && gid != 0, "{what}: runs as {uid}:{gid}");
        // The uid transparent mode's iptables rules exempt: the image's USER too (proxy/Dockerfile).
        assert_eq!(
            uid,
            i64::from(sidecar_proxy::iptables::rules::DEFAULT_PROXY_UID),
            "{what}"
        );
        let added = security
            .capabilities
            .as_ref()
            .and_then(|c| c.add.clone())
            .unwrap_or_default();
        assert!(added.is_empty(), "{what}: adds {added:?}");
    }
}

#[test]
fn only_transparent_mode_adds_the_init_container_with_exactly_net_admin_and_net_raw() {
    for annotations in MODES {
        let injected = inject(annotations);
        let spec = injected.patched.spec.as_ref().unwrap();
        let transparent = annotations
            .iter()
            .all(|(k, v)| *k != "proxy-type" || *v == "transparent");
        let init = spec
            .init_containers
            .as_deref()
            .and_then(|list| container(list, INIT_NAME));
        let Some(init) = init else {
            assert!(!transparent, "{annotations:?}: no iptables init container");
            continue;
        };
        assert!(
            transparent,
            "{annotations:?}: an inline mode needs no iptables"
        );
        let what = format!("init container for {annotations:?}");
        assert_locked_down(init, &what);
        // Root, because iptables needs it, but only the two network capabilities, and only for the
        // moment the rules are written: the init container exits before the app starts.
        let added: BTreeSet<String> = security(init)
            .capabilities
            .as_ref()
            .and_then(|c| c.add.clone())
            .unwrap_or_default()
            .into_iter()
            .collect();
        assert_eq!(
            added,
            BTreeSet::from(["NET_ADMIN".to_owned(), "NET_RAW".to_owned()]),
            "{what}"
        );
        assert_eq!(
            init.args.as_deref(),
            Some(&["init-iptables".to_owned()][..])
        );
        assert!(init.ports.is_none(), "{what}: listens on nothing");
    }
}

/// The patch's operations, as (op, path with indices replaced by `N`).
fn operations(patch: &Value) -> Vec<(String, String)> {
    patch
        .as_array()
        .unwrap()
        .iter()
        .map(|op| {
            let path = op["path"].as_str().unwrap();
            let shape: Vec<String> = path
                .split('/')
                .map(|part| {
                    if !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()) {
                        "N".to_owned()
                    } else {
                        part.to_owned()
                    }
                })
                .collect();
            (op["op"].as_str().unwrap().to_owned(), shape.join("/"))
        })
        .collect()
}

#[test]
fn the_patch_only_adds_and_never_touches_what_widens_the_pods_privileges() {
    // Everything injection may change. Notably absent: hostNetwork/hostPID/hostIPC, the pod's
    // securityContext, serviceAccountName, automountServiceAccountToken, anything of an app container
    // other than its env and its mounts (configure-app; the mount is checked below), and any remove or
    // replace.
    let allowed = [
        "/metadata/annotations",
        "/metadata/annotations/kubectl.kubernetes.io~1default-container",
        "/metadata/annotations/sidecar.speedscale.com~1injected",
        "/metadata/annotations/sidecar.speedscale.com~1sidecar-layout",
        "/metadata/annotations/sidecar.speedscale.com~1sidecar-layout-reason",
        "/metadata/labels",
        "/metadata/labels/sidecar.speedscale.com~1injected",
        "/spec/containers/N",
        "/spec/containers/N/env",
        "/spec/containers/N/env/-",
        "/spec/containers/N/env/N/value",
        "/spec/containers/N/volumeMounts",
        "/spec/containers/N/volumeMounts/-",
        "/spec/initContainers",
        "/spec/initContainers/N",
        "/spec/initContainers/-",
        "/spec/volumes",
        "/spec/volumes/-",
    ];
    for annotations in MODES {
        let injected = inject(annotations);
        for (op, path) in operations(&injected.patch) {
            assert_eq!(op, "add", "{annotations:?}: {op} {path}");
            assert!(
                allowed.contains(&path.as_str()),
                "{annotations:?}: the patch touches {path}"
            );
        }
        let before = &injected.original["spec"];
        let after = serde_json::to_value(injected.patched.spec.as_ref().unwrap()).unwrap();
        for field in [
            "hostNetwork",
            "hostPID",
            "hostIPC",
            "securityContext",
            "serviceAccountName",
            "automountServiceAccountToken",
            "shareProcessNamespace",
        ] {
            assert_eq!(after[field], before[field], "{annotations:?}: {field}");
        }

        let spec = injected.patched.spec.as_ref().unwrap();
        // Only emptyDir volumes: nothing of the node's filesystem, no extra token; the one Secret is the
        // capture CA and the one ConfigMap the upstream CAs, with tls-out only.
        for volume in spec.volumes.iter().flatten() {
            let as_json = serde_json::to_value(volume).unwrap();
            let sources: Vec<&String> = as_json
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "name")
                .collect();
            let expected = match volume.name.as_str() {
                CA_VOLUME if has_tls_out(annotations) => "secret",
                UPSTREAM_CA_VOLUME if has_tls_out(annotations) => "configMap",
                _ => "emptyDir",
            };
            assert_eq!(sources, [expected], "{annotations:?}: volume {as_json}");
        }
        // The records are on a volume only the sidecar mounts: app containers cannot read them.
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            let mounts_capture = c
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == CAPTURE_VOLUME);
            assert_eq!(
                mounts_capture,
                c.name == SIDECAR_NAME,
                "{annotations:?}: {} and the capture volume",
                c.name
            );
            // The CA's key and the upstream CAs are the sidecar's alone, and read-only even there; the
            // apps may only read the trust files, and gain no other mount.
            for m in c.volume_mounts.iter().flatten() {
                if m.name == CA_VOLUME || m.name == UPSTREAM_CA_VOLUME {
                    assert_eq!(
                        c.name, SIDECAR_NAME,
                        "{annotations:?}: {} mounts {}",
                        c.name, m.name
                    );
                    assert_eq!(m.read_only, Some(true), "{annotations:?}: {}", m.name);
                }
                if c.name != SIDECAR_NAME && m.name == TRUST_VOLUME {
                    assert_eq!(m.read_only, Some(true), "{annotations:?}: {}", c.name);
                }
            }
            let app_mounts_before = injected.original["spec"]["containers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|original| original["name"] == c.name.as_str())
                .map(|original| {
                    original["volumeMounts"]
                        .as_array()
                        .map_or(0, |mounts| mounts.len())
                });
            if let Some(before) = app_mounts_before {
                let after: Vec<&str> = c
                    .volume_mounts
                    .iter()
                    .flatten()
                    .skip(before)
                    .map(|m| m.name.as_str())
                    .collect();
                let allowed: &[&str] = if has_tls_out(annotations) {
                    &[TRUST_VOLUME]
                } else {
                    &[]
                };
                assert!(
                    after.iter().all(|name| allowed.contains(name)),
                    "{annotations:?}: {} gains mounts {after:?}",
                    c.name
                );
            }
            for port in c.ports.iter().flatten() {
                assert!(port.host_port.is_none(), "{annotations:?}: {port:?}");
            }
        }
    }
}

#[test]
fn the_sidecar_can_read_the_capture_ca_and_the_upstream_cas_without_the_pod_setting_fs_group() {
    // Without fsGroup the kubelet makes a Secret's or ConfigMap's files root:root, and the sidecar runs
    // as 2102:2102 with no supplemental groups: only the mode's bits for others let it read them.
    let mut pod = pod(&[
        ("proxy-type", "forward"),
        ("tls-out", "true"),
        ("tls-out-upstream-ca", "internal-ca"),
    ]);
    pod.spec.as_mut().unwrap().security_context = None;
    let Ok(Admission::Patched(patch)) = admit(&pod, &SidecarOptions::new(IMAGE)) else {
        panic!("not injected");
    };
    let mut patched = serde_json::to_value(&pod).unwrap();
    json_patch::patch(&mut patched, &patch).unwrap();
    let patched: Pod = serde_json::from_value(patched).unwrap();
    let spec = patched.spec.unwrap();
    let volume = |name: &str| {
        spec.volumes
            .iter()
            .flatten()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let secret_mode = volume(CA_VOLUME)
        .secret
        .as_ref()
        .and_then(|s| s.default_mode);
    let config_map_mode = volume(UPSTREAM_CA_VOLUME)
        .config_map
        .as_ref()
        .and_then(|c| c.default_mode);
    for (what, mode) in [("CA", secret_mode), ("upstream CAs", config_map_mode)] {
        let mode = mode.unwrap_or_else(|| panic!("{what}: no explicit mode"));
        assert_eq!(mode & 0o004, 0o004, "{what}: others cannot read: {mode:o}");
        assert_eq!(mode & 0o333, 0, "{what}: writable or executable: {mode:o}");
    }
    assert!(spec.security_context.is_none(), "the pod's own business");
}

#[test]
fn the_sidecar_keeps_the_loopback_forward_listener() {
    // The proxy's own default, which proxy/tests/security_defaults.rs proves with the real binary.
    assert!(sidecar_proxy::options::DEFAULT_OUTBOUND_BIND.is_loopback());
    for annotations in MODES {
        let injected = inject(annotations);
        let spec = injected.patched.spec.as_ref().unwrap();
        let sidecar = sidecar_of(spec);
        let env: BTreeMap<&str, &str> = sidecar
            .env
            .iter()
            .flatten()
            .map(|var| (var.name.as_str(), var.value.as_deref().unwrap_or_default()))
            .collect();
        // No bind address at all: the listeners keep the binary's defaults (outbound on 127.0.0.1).
        let binds: Vec<&&str> = env.keys().filter(|k| k.ends_with("_BIND")).collect();
        assert!(binds.is_empty(), "{annotations:?}: sets {binds:?}");
        // And an app pointed at the sidecar points at loopback.
        for app in spec.containers.iter().filter(|c| c.name != SIDECAR_NAME) {
            for var in app.env.iter().flatten() {
                if var.name.ends_with("_PROXY") {
                    let value = var.value.as_deref().unwrap_or_default();
                    assert!(
                        value.contains("://127.0.0.1:"),
                        "{annotations:?}: {}={value}",
                        var.name
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The injector's image

/// `USER` of each stage of a Dockerfile, and each stage's base.
fn dockerfile_stages(text: &str) -> Vec<(String, String, Option<String>)> {
    let mut stages: Vec<(String, String, Option<String>)> = Vec::new();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["FROM", base, "AS", name] => {
                // A stage built on another inherits its user.
                let inherited = stages
                    .iter()
                    .find(|(stage, _, _)| stage == base)
                    .and_then(|(_, _, user)| user.clone());
                stages.push(((*name).to_owned(), (*base).to_owned(), inherited));
            }
            ["USER", user] => {
                stages.last_mut().expect("USER before FROM").2 = Some((*user).to_owned())
            }
            _ => {}
        }
    }
    stages
}

/// A `uid:gid` in numbers, both non-zero: a name could map to root in some base image, and Kubernetes'
/// `runAsNonRoot` can only verify a numeric user.
fn assert_numeric_non_root(user: &str, what: &str) {
    let (uid, gid) = user.split_once(':').unwrap_or((user, ""));
    let uid: u32 = uid
        .parse()
        .unwrap_or_else(|_| panic!("{what}: USER {user} is not numeric"));
    let gid: u32 = gid
        .parse()
        .unwrap_or_else(|_| panic!("{what}: USER {user} names no numeric group"));
    assert!(uid != 0 && gid != 0, "{what}: USER {user}");
}

/// The user the stages people run (the default, last, target and the one built from a host binary) run
/// as; both must be built on the runtime stage and agree.
fn image_user(dockerfile: &Path) -> String {
    let text = std::fs::read_to_string(dockerfile)
        .unwrap_or_else(|e| panic!("{}: {e}", dockerfile.display()));
    let stages = dockerfile_stages(&text);
    let what = dockerfile.display();
    assert_eq!(
        stages.last().unwrap().0,
        "from-source",
        "{what}: the default target"
    );
    let users: BTreeSet<String> = ["prebuilt", "from-source"]
        .iter()
        .map(|name| {
            let (_, base, user) = stages
                .iter()
                .find(|(stage, _, _)| stage == name)
                .unwrap_or_else(|| panic!("{what}: no stage {name}"));
            assert_eq!(
                base, "runtime",
                "{what}: {name} is built on the runtime stage"
            );
            let user = user
                .clone()
                .unwrap_or_else(|| panic!("{what}: {name} has no USER"));
            assert_numeric_non_root(&user, &format!("{what}: {name}"));
            user
        })
        .collect();
    assert_eq!(users.len(), 1, "{what}: {users:?}");
    users.into_iter().next().unwrap()
}

#[test]
fn both_images_run_as_numeric_non_root_users() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    image_user(&root.join("Dockerfile"));
    // The sidecar's image runs as the uid the injector sets, which transparent mode's rules exempt.
    let uid = sidecar_proxy::iptables::rules::DEFAULT_PROXY_UID;
    assert_eq!(
        image_user(&root.join("../proxy/Dockerfile")),
        format!("{uid}:{uid}")
    );
}

// ---------------------------------------------------------------------------------------------------------
// Webhook TLS, against OpenSSL's client

fn scratch_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "security-defaults-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `sidecar-injector serve` on loopback with a certificate from `sidecar-injector certs`, its stderr kept.
struct Webhook {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Webhook {
    fn start() -> Webhook {
        let dir = scratch_dir();
        let certs = Command::new(BIN)
            .args(["certs", "--service", "sidecar-injector", "--namespace"])
            .args(["sidecar-injector", "--extra-san", "localhost", "--out-dir"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(certs.status.success(), "{certs:?}");
        let addr = free_port();
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--tls-cert")
            .arg(dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.join("tls.key"))
            .args(["--sidecar-image", IMAGE])
            .env_remove("SIDECAR_IMAGE_PULL_POLICY")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sidecar-injector serve");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let mut webhook = Webhook {
            child,
            addr,
            dir,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            if let Some(status) = webhook.child.try_wait().unwrap() {
                panic!("serve exited ({status}): {}", webhook.stderr());
            }
            assert!(Instant::now() < deadline, "serve never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        webhook
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The server's log lines about failed handshakes so far.
    fn handshake_failures(&self) -> Vec<String> {
        self.stderr()
            .lines()
            .filter(|line| line.contains("TLS handshake failed"))
            .map(str::to_owned)
            .collect()
    }

    /// `openssl s_client` with `version_flag` (`-tls1_2`, ...), trusting only the webhook's CA and checking
    /// the name. `DEFAULT@SECLEVEL=0` lets OpenSSL itself offer the old versions, so a refusal is the
    /// server's, not a client-side policy.
    fn openssl(&self, version_flag: &str) -> Output {
        let mut child = Command::new("openssl")
            .args(["s_client", "-brief", "-connect", &self.addr.to_string()])
            .args(["-servername", "localhost", "-verify_hostname", "localhost"])
            .arg("-CAfile")
            .arg(self.dir.join("ca.crt"))
            .args(["-verify_return_error", version_flag])
            .args(["-cipher", "DEFAULT@SECLEVEL=0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run openssl ({e}): install it (Debian: apt-get install openssl)")
            });
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("openssl s_client {version_flag} did not finish");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_webhook_speaks_tls_1_2_and_1_3_and_refuses_1_0_and_1_1() {
    let webhook = Webhook::start();

    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let output = webhook.openssl(flag);
        let all = text(&output);
        assert!(output.status.success(), "{flag}: {all}");
        assert!(all.contains("CONNECTION ESTABLISHED"), "{flag}: {all}");
        assert!(
            all.contains(&format!("Protocol version: {version}")),
            "{flag}: {all}"
        );
        assert!(all.contains("Verification: OK"), "{flag}: {all}");
    }
    assert!(
        webhook.handshake_failures().is_empty(),
        "{}",
        webhook.stderr()
    );

    for (attempt, flag) in ["-tls1", "-tls1_1"].into_iter().enumerate() {
        let output = webhook.openssl(flag);
        let all = text(&output);
        assert!(!output.status.success(), "{flag} was accepted: {all}");
        assert!(!all.contains("CONNECTION ESTABLISHED"), "{flag}: {all}");
        // Not OpenSSL declining to offer the version itself...
        assert!(!all.contains("no protocols available"), "{flag}: {all}");
        assert!(!all.contains("unknown option"), "{flag}: {all}");
        // ...but the server answering the ClientHello with a fatal alert,
        assert!(all.contains("SSL alert number"), "{flag}: {all}");
        // and saying why in its own log.
        let deadline = Instant::now() + Duration::from_secs(5);
        while webhook.handshake_failures().len() <= attempt {
            assert!(
                Instant::now() < deadline,
                "{flag}: the server logged no refused handshake: {}",
                webhook.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let refusal = &webhook.handshake_failures()[attempt];
        assert!(
            refusal.contains("peer is incompatible"),
            "{flag}: {refusal}"
        );
    }
}
