//! The fuzz corpus as regression tests, as Envoy runs its corpora: every file of `corpus/<target>/` goes
//! through its target under plain `cargo test`, so the seeds and every input that once crashed keep
//! passing without libFuzzer.
//!
//! The admission targets' seeds include one per golden case of the injector (`golden-<case>`), generated
//! from `injector/testdata/golden/<case>/pod.yaml`; a test fails when they drift apart. After adding or
//! changing a golden case, regenerate them and review the diff:
//!
//! ```sh
//! UPDATE_SEEDS=1 cargo test -p sidecar-fuzz --test corpus
//! ```

use std::collections::BTreeSet;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use rstest::rstest;
use serde_json::{json, Value};
use sidecar_fuzz::{Target, TARGETS};

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn target_named(name: &str) -> Target {
    TARGETS
        .iter()
        .find(|(target, _)| *target == name)
        .map(|(_, run)| *run)
        .unwrap_or_else(|| panic!("no target {name} in sidecar_fuzz::TARGETS"))
}

#[rstest]
#[case::socks_handshake("socks_handshake")]
#[case::http_forward("http_forward")]
#[case::transparent_detect("transparent_detect")]
#[case::config_flags("config_flags")]
#[case::annotations_file("annotations_file")]
#[case::ignore_ports("ignore_ports")]
#[case::admission_review("admission_review")]
#[case::admission_pod("admission_pod")]
#[case::capture_record("capture_record")]
#[case::har_export("har_export")]
#[case::capture_tap("capture_tap")]
fn every_corpus_file_passes(#[case] target: &str) {
    let run = target_named(target);
    let files = corpus_files(target);
    assert!(!files.is_empty(), "corpus/{target} has no seeds");
    // Every failing file is named, not only the first.
    let failures: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let data = fs::read(path).expect("a corpus file reads");
            catch_unwind(AssertUnwindSafe(|| run(&data)))
                .err()
                .map(|_| path.display().to_string())
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{target}: {} of {} corpus files fail (their panics are printed above):\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// The case list above, the library's targets, the corpus directories and the libFuzzer wrappers name the
/// same targets, so none is added in one place and forgotten in another.
#[test]
fn every_target_has_a_corpus_a_case_and_a_libfuzzer_wrapper() {
    let names: BTreeSet<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    assert_eq!(names.len(), TARGETS.len(), "target names are unique");

    let corpora: BTreeSet<String> = fs::read_dir(fuzz_dir().join("corpus"))
        .expect("fuzz/corpus reads")
        .map(|entry| entry.expect("a directory entry").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    let wrappers: BTreeSet<String> = fs::read_dir(fuzz_dir().join("cargo-fuzz/fuzz_targets"))
        .expect("fuzz/cargo-fuzz/fuzz_targets reads")
        .map(|entry| entry.expect("a directory entry").path())
        .filter_map(|path| Some(path.file_stem()?.to_string_lossy().into_owned()))
        .collect();
    let this_file = fs::read_to_string(fuzz_dir().join("tests/corpus.rs")).expect("reads");
    let manifest = fs::read_to_string(fuzz_dir().join("cargo-fuzz/Cargo.toml")).expect("reads");
    for name in &names {
        assert!(corpora.contains(*name), "no corpus/{name}");
        assert!(
            wrappers.contains(*name),
            "no cargo-fuzz/fuzz_targets/{name}.rs"
        );
        assert!(
            this_file.contains(&format!("#[case::{name}(\"{name}\")]")),
            "no corpus test case for {name}"
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "no [[bin]] {name} in cargo-fuzz/Cargo.toml"
        );
    }
    let known: BTreeSet<String> = names.iter().map(|name| (*name).to_owned()).collect();
    assert_eq!(corpora, known, "corpus directories without a target");
    assert_eq!(wrappers, known, "libFuzzer wrappers without a target");
}

/// One seed per golden case of the injector, for each admission target.
#[test]
fn admission_seeds_follow_the_injector_golden_cases() {
    let golden = fuzz_dir().join("../injector/testdata/golden");
    let update = std::env::var_os("UPDATE_SEEDS").is_some();
    let mut cases: Vec<PathBuf> = fs::read_dir(&golden)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", golden.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.join("pod.yaml").is_file())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no golden cases found");

    let mut stale = Vec::new();
    let mut expected_names = BTreeSet::new();
    for case in &cases {
        let name = case.file_name().expect("a case name").to_string_lossy();
        let yaml = fs::read_to_string(case.join("pod.yaml")).expect("pod.yaml reads");
        let pod: Value =
            serde_yaml_ng::from_str(&yaml).unwrap_or_else(|e| panic!("{}: {e}", case.display()));
        let seeds = [
            (
                fuzz_dir().join(format!("corpus/admission_review/golden-{name}.json")),
                admission_review_seed(&name, &pod),
            ),
            (
                fuzz_dir().join(format!("corpus/admission_pod/golden-{name}.txt")),
                admission_pod_seed(&pod),
            ),
        ];
        for (path, content) in seeds {
            expected_names.insert(path.clone());
            if update {
                fs::write(&path, &content).expect("the seed writes");
            } else if fs::read(&path).ok().as_deref() != Some(content.as_bytes()) {
                stale.push(path.display().to_string());
            }
        }
    }
    // Seeds of golden cases that no longer exist.
    for target in ["admission_review", "admission_pod"] {
        for path in corpus_files(target) {
            let is_golden = path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("golden-"));
            if is_golden && !expected_names.contains(&path) {
                if update {
                    fs::remove_file(&path).expect("the stale seed is removed");
                } else {
                    stale.push(path.display().to_string());
                }
            }
        }
    }
    assert!(
        stale.is_empty(),
        "admission seeds out of step with injector/testdata/golden (UPDATE_SEEDS=1 regenerates them):\n{}",
        stale.join("\n")
    );
}

/// The AdmissionReview the API server sends for the pod's CREATE.
fn admission_review_seed(case: &str, pod: &Value) -> String {
    let gvk = json!({"group": "", "version": "v1", "kind": "Pod"});
    let gvr = json!({"group": "", "version": "v1", "resource": "pods"});
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("golden-{case}"),
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "namespace": pod.pointer("/metadata/namespace").cloned().unwrap_or(json!("default")),
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": null,
            "dryRun": false
        }
    });
    let mut text = serde_json::to_string_pretty(&review).expect("encodes");
    text.push('\n');
    text
}

/// The pod in `admission_pod`'s line format: annotations, containers, host networking.
fn admission_pod_seed(pod: &Value) -> String {
    let mut lines = Vec::new();
    if let Some(annotations) = pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        for (key, value) in annotations {
            lines.push(format!("{key}={}", value.as_str().unwrap_or_default()));
        }
    }
    for container in pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(name) = container.get("name").and_then(Value::as_str) {
            lines.push(format!("container:{name}"));
        }
    }
    if pod.pointer("/spec/hostNetwork") == Some(&Value::Bool(true)) {
        lines.push("hostNetwork:true".to_owned());
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}
