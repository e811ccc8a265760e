//! The suite's container images, built locally and tagged by a hash of their inputs (Dockerfile, build
//! context, build arguments, base image), so an image whose inputs did not change is never rebuilt.
//!
//! The client images build from `conformance/clients/<runtime>/Dockerfile`. The sidecar and the injector
//! are built from their own Dockerfiles (`proxy/Dockerfile`, `injector/Dockerfile`) at the `prebuilt`
//! stage, which packages a binary built on the host by cargo into the same runtime stage users get: inside
//! an offline image build there is no usable Rust toolchain (see docs/building.md). The upstream is built
//! the same way from `conformance/upstream.Dockerfile`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

use crate::clients::Runtime;
use crate::workspace;

/// The base every image builds on; `scripts/docker-engine.sh` makes it with debootstrap. Users with a
/// registry can point this at `debian:bookworm-slim`.
pub fn base_image() -> String {
    std::env::var("CONFORMANCE_BASE_IMAGE")
        .unwrap_or_else(|_| "sidecar-conformance/debian-base:bookworm".to_owned())
}

/// Every image a cell needs, by tag.
#[derive(Debug, Clone)]
pub struct Images {
    pub sidecar: String,
    pub injector: String,
    pub upstream: String,
    pub clients: BTreeMap<&'static str, String>,
    /// The `sidecar-proxy` binary the sidecar image carries, for the commands a user runs on their own
    /// machine (`sidecar-proxy ca create`).
    pub sidecar_binary: PathBuf,
}

impl Images {
    pub fn client(&self, runtime: Runtime) -> &str {
        &self.clients[runtime.dir()]
    }
}

/// Builds (or finds) every image once per test process; concurrent cells wait for the first build.
pub fn images() -> Result<&'static Images, String> {
    static IMAGES: OnceLock<Result<Images, String>> = OnceLock::new();
    IMAGES
        .get_or_init(|| build_all().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(Clone::clone)
}

fn build_all() -> anyhow::Result<Images> {
    let base = base_image();
    let base_id =
        docker_output(&["image", "inspect", "--format", "{{.Id}}", &base]).with_context(|| {
            format!("base image {base} is missing: run scripts/docker-engine.sh (as root) first")
        })?;
    let root = workspace::root();
    let binaries = workspace::binaries()?;

    // The project's own Dockerfiles, at the stage that packages a binary built on the host.
    let sidecar = ensure(
        &ImageInputs::new("sidecar-proxy", root.join("proxy/Dockerfile"))
            .target("prebuilt")
            .file("sidecar-proxy", &binaries.sidecar_proxy),
        &base,
        &base_id,
    )?;
    let injector = ensure(
        &ImageInputs::new("sidecar-injector", root.join("injector/Dockerfile"))
            .target("prebuilt")
            .file("sidecar-injector", &binaries.injector),
        &base,
        &base_id,
    )?;
    let upstream = ensure(
        &ImageInputs::new(
            "conformance-upstream",
            root.join("conformance/upstream.Dockerfile"),
        )
        .file("conformance-upstream", &binaries.upstream),
        &base,
        &base_id,
    )?;
    let mut clients = BTreeMap::new();
    for runtime in Runtime::ALL {
        let dir = root.join("conformance/clients").join(runtime.dir());
        let mut inputs =
            ImageInputs::new(&format!("client-{}", runtime.dir()), dir.join("Dockerfile"))
                .directory(&dir)?;
        let host_ca = Path::new(HOST_CA_BUNDLE);
        if runtime == Runtime::Node && host_ca.exists() {
            // npm talks TLS to its registry; behind a TLS-inspecting gateway it must trust the gateway's
            // CA, which the host's bundle carries (the Dockerfile does without one where there is none).
            inputs = inputs.file("build-ca.crt", host_ca);
        }
        clients.insert(runtime.dir(), ensure(&inputs, &base, &base_id)?);
    }
    Ok(Images {
        sidecar,
        injector,
        upstream,
        clients,
        sidecar_binary: binaries.sidecar_proxy,
    })
}

const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What goes into one image: its Dockerfile and the files of its build context.
struct ImageInputs {
    name: String,
    dockerfile: PathBuf,
    /// The Dockerfile stage to build, when not the last.
    target: Option<&'static str>,
    /// Context-relative name → file on the host.
    files: BTreeMap<String, PathBuf>,
}

impl ImageInputs {
    fn new(name: &str, dockerfile: PathBuf) -> Self {
        ImageInputs {
            name: name.to_owned(),
            dockerfile,
            target: None,
            files: BTreeMap::new(),
        }
    }

    fn target(mut self, stage: &'static str) -> Self {
        self.target = Some(stage);
        self
    }

    fn file(mut self, name: &str, source: &Path) -> Self {
        self.files.insert(name.to_owned(), source.to_path_buf());
        self
    }

    /// Every file under `dir` (but dependency folders a developer may have installed locally).
    fn directory(mut self, dir: &Path) -> anyhow::Result<Self> {
        let mut pending = vec![dir.to_path_buf()];
        while let Some(current) = pending.pop() {
            for entry in fs::read_dir(&current)
                .with_context(|| format!("cannot list {}", current.display()))?
            {
                let path = entry?.path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name == "node_modules" || name == "build-ca.crt" {
                    continue;
                }
                if path.is_dir() {
                    pending.push(path);
                } else {
                    let relative = path.strip_prefix(dir)?.to_string_lossy().into_owned();
                    self.files.insert(relative, path);
                }
            }
        }
        Ok(self)
    }

    fn tag(&self, base_id: &str) -> anyhow::Result<String> {
        let mut hash = Sha256::new();
        hash.update(base_id.as_bytes());
        hash.update(self.target.unwrap_or("").as_bytes());
        hash.update(
            fs::read(&self.dockerfile)
                .with_context(|| format!("cannot read {}", self.dockerfile.display()))?,
        );
        for (name, source) in &self.files {
            hash.update(name.as_bytes());
            hash.update([0]);
            hash.update(
                fs::read(source).with_context(|| format!("cannot read {}", source.display()))?,
            );
        }
        let digest = hash.finalize();
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(format!("sidecar-conformance/{}:{hex}", self.name))
    }
}

/// The image's tag, built first when no image has that tag.
fn ensure(inputs: &ImageInputs, base: &str, base_id: &str) -> anyhow::Result<String> {
    let tag = inputs.tag(base_id)?;
    if docker_output(&["image", "inspect", "--format", "{{.Id}}", &tag]).is_ok() {
        return Ok(tag);
    }
    let context = workspace::scratch_dir().join("build").join(&inputs.name);
    let _ = fs::remove_dir_all(&context);
    fs::create_dir_all(&context)?;
    for (name, source) in &inputs.files {
        let target = context.join(name);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(source, &target)
            .with_context(|| format!("cannot copy {} into the build context", source.display()))?;
    }
    fs::copy(&inputs.dockerfile, context.join("Dockerfile"))?;
    eprintln!("conformance: building {tag}");
    let mut build = Command::new("docker");
    build
        .args(["build", "--network", "host", "--build-arg"])
        .arg(format!("BASE_IMAGE={base}"))
        .args(["--tag", &tag]);
    if let Some(stage) = inputs.target {
        build.args(["--target", stage]);
    }
    let output = build.arg(&context).output().context("cannot run docker")?;
    if !output.status.success() {
        let log = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        let tail: Vec<_> = log.lines().rev().take(30).collect();
        let tail: Vec<_> = tail.into_iter().rev().collect();
        bail!("docker build of {tag} failed:\n{}", tail.join("\n"));
    }
    Ok(tag)
}

fn docker_output(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("docker")
        .args(args)
        .output()
        .context("cannot run docker")?;
    if !output.status.success() {
        bail!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
