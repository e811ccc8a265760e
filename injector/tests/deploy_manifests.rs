//! deploy/: every YAML file parses, and the manifests agree with each other and with the binary — the
//! webhook calls the Service that fronts the Deployment's port, the certificate names are the ones
//! `sidecar-injector certs` mints, the Deployment mounts the secret cert-manager writes — and the webhook
//! registration makes the choices its comments explain; the injector may only read the nodes and
//! /version (rbac.yaml) and its pod meets the restricted Pod Security Standard (docs/security.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sidecar_injector::certs::service_dns_names;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn yaml_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, found);
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            found.push(path);
        }
    }
}

/// Every file under deploy/ (relative path) → its documents.
fn manifests() -> BTreeMap<String, Vec<Value>> {
    let root = deploy_dir();
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    assert!(!files.is_empty(), "no YAML under {}", root.display());
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let documents: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
                .map(|document| {
                    serde::Deserialize::deserialize(document)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                })
                .filter(|document: &Value| !document.is_null())
                .collect();
            let relative = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (relative, documents)
        })
        .collect()
}

/// The one object of `kind` (and `name`, if given) in `file`.
fn object<'a>(all: &'a BTreeMap<String, Vec<Value>>, file: &str, kind: &str) -> &'a Value {
    let matching: Vec<&Value> = all[file].iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(matching.len(), 1, "one {kind} in {file}");
    matching[0]
}

fn named<'a>(all: &'a BTreeMap<String, Vec<Value>>, kind: &str, name: &str) -> &'a Value {
    let matching: Vec<&Value> = all
        .values()
        .flatten()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(matching.len(), 1, "one {kind} {name} in deploy/");
    matching[0]
}

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"))
}

#[test]
fn every_file_parses_and_every_object_is_named_and_placed() {
    let all = manifests();
    let namespace = object(&all, "namespace.yaml", "Namespace");
    let ns = str_of(&namespace["metadata"]["name"], "namespace name");
    for (file, documents) in &all {
        assert!(!documents.is_empty(), "{file} is empty");
        for document in documents {
            let kind = str_of(&document["kind"], "kind");
            if kind == "Kustomization" {
                continue;
            }
            assert!(
                document["apiVersion"].is_string(),
                "{file}: {kind} apiVersion"
            );
            assert!(
                document["metadata"]["name"].is_string(),
                "{file}: {kind} name"
            );
            let cluster_scoped = matches!(
                kind,
                "Namespace" | "MutatingWebhookConfiguration" | "ClusterRole" | "ClusterRoleBinding"
            );
            if cluster_scoped {
                assert!(
                    document["metadata"]["namespace"].is_null(),
                    "{file}: {kind}"
                );
            } else {
                assert_eq!(document["metadata"]["namespace"], ns, "{file}: {kind}");
            }
        }
    }
}

#[test]
fn the_kustomizations_list_existing_files_and_leave_out_only_the_manual_webhook() {
    let all = manifests();
    let root = deploy_dir();
    let mut listed = Vec::new();
    for (file, documents) in &all {
        let Some(kustomization) = documents.iter().find(|d| d["kind"] == "Kustomization") else {
            continue;
        };
        let dir = Path::new(file).parent().unwrap().to_owned();
        for resource in kustomization["resources"].as_array().expect("resources") {
            let resource = str_of(resource, "resource");
            let path = root.join(&dir).join(resource);
            assert!(
                path.exists(),
                "{file} lists {resource}, which does not exist"
            );
            if path.is_dir() {
                assert!(
                    path.join("kustomization.yaml").exists(),
                    "{file}: {resource}"
                );
            } else {
                let relative = dir.join(resource).to_string_lossy().into_owned();
                listed.push(relative);
            }
        }
    }
    for file in all.keys() {
        let is_kustomization = file.ends_with("kustomization.yaml");
        // The manual webhook registration needs its caBundle substituted first (README.md).
        let manual = file == "mutatingwebhookconfiguration.yaml";
        assert!(
            is_kustomization || manual || listed.contains(file),
            "{file} is in no kustomization"
        );
    }
    assert!(!listed.contains(&"mutatingwebhookconfiguration.yaml".to_owned()));
    // kustomize refuses an overlay inside its base's directory ("cycle detected"): cert-manager/ is applied
    // beside the base, not on top of it.
    let cert_manager = object(&all, "cert-manager/kustomization.yaml", "Kustomization");
    for resource in cert_manager["resources"].as_array().unwrap() {
        assert!(
            !str_of(resource, "resource").starts_with(".."),
            "{resource}"
        );
    }
}

#[test]
fn the_objects_are_valid_kubernetes_types() {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};

    fn check<T: serde::de::DeserializeOwned>(file: &str, document: &Value) {
        if let Err(e) = serde_json::from_value::<T>(document.clone()) {
            panic!("{file}: {}: {e}", document["kind"]);
        }
    }
    let all = manifests();
    let mut checked = 0;
    for (file, documents) in &all {
        for document in documents {
            let mut document = document.clone();
            let ca_bundle = document
                .pointer_mut("/webhooks/0/clientConfig/caBundle")
                .filter(|bundle| *bundle == "${CA_BUNDLE}");
            if let Some(ca_bundle) = ca_bundle {
                // What envsubst puts there: base64 of the CA's PEM.
                *ca_bundle = Value::String("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t".to_owned());
            }
            match document["kind"].as_str().unwrap() {
                "Namespace" => check::<Namespace>(file, &document),
                "ServiceAccount" => check::<ServiceAccount>(file, &document),
                "Service" => check::<Service>(file, &document),
                "Deployment" => check::<Deployment>(file, &document),
                "PodDisruptionBudget" => check::<PodDisruptionBudget>(file, &document),
                "ClusterRole" => check::<ClusterRole>(file, &document),
                "ClusterRoleBinding" => check::<ClusterRoleBinding>(file, &document),
                "MutatingWebhookConfiguration" => {
                    check::<MutatingWebhookConfiguration>(file, &document)
                }
                // cert-manager's and kustomize's kinds: checked field by field in the other tests.
                "Issuer" | "Certificate" | "Kustomization" => continue,
                other => panic!("{file}: unexpected kind {other}"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 9);
}

/// The two registrations: the manual one and cert-manager's.
fn webhook_configurations(all: &BTreeMap<String, Vec<Value>>) -> [(&'static str, &Value); 2] {
    [
        (
            "mutatingwebhookconfiguration.yaml",
            object(
                all,
                "mutatingwebhookconfiguration.yaml",
                "MutatingWebhookConfiguration",
            ),
        ),
        (
            "cert-manager/mutatingwebhookconfiguration.yaml",
            object(
                all,
                "cert-manager/mutatingwebhookconfiguration.yaml",
                "MutatingWebhookConfiguration",
            ),
        ),
    ]
}

#[test]
fn the_webhook_is_registered_as_its_comments_say() {
    let all = manifests();
    let namespace = object(&all, "namespace.yaml", "Namespace");
    let ns = str_of(&namespace["metadata"]["name"], "namespace");
    assert_eq!(
        namespace["metadata"]["labels"]["kubernetes.io/metadata.name"],
        ns
    );
    let service = object(&all, "service.yaml", "Service");

    for (file, config) in webhook_configurations(&all) {
        let webhooks = config["webhooks"].as_array().unwrap();
        assert_eq!(webhooks.len(), 1, "{file}");
        let webhook = &webhooks[0];
        assert_eq!(
            webhook["admissionReviewVersions"],
            serde_json::json!(["v1"]),
            "{file}"
        );
        assert_eq!(webhook["sideEffects"], "None", "{file}");
        assert_eq!(webhook["failurePolicy"], "Ignore", "{file}");
        assert_eq!(webhook["timeoutSeconds"], 5, "{file}");
        assert_eq!(webhook["reinvocationPolicy"], "IfNeeded", "{file}");
        assert_eq!(
            webhook["rules"],
            serde_json::json!([{
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }]),
            "{file}"
        );

        // Never the injector's own namespace, nor kube-system.
        let expressions = webhook["namespaceSelector"]["matchExpressions"]
            .as_array()
            .unwrap();
        let excluded = expressions
            .iter()
            .find(|e| e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "NotIn")
            .unwrap_or_else(|| panic!("{file}: no kubernetes.io/metadata.name NotIn"));
        let values = excluded["values"].as_array().unwrap();
        assert!(values.iter().any(|v| v == ns), "{file}: {ns} not excluded");
        assert!(values.iter().any(|v| v == "kube-system"), "{file}");
        let opt_out = &webhook["objectSelector"]["matchExpressions"][0];
        assert_eq!(opt_out["key"], "sidecar.speedscale.com/inject", "{file}");
        assert_eq!(opt_out["operator"], "NotIn", "{file}");
        assert_eq!(opt_out["values"], serde_json::json!(["false"]), "{file}");

        // It calls the Service, on the path the server answers.
        let target = &webhook["clientConfig"]["service"];
        assert_eq!(target["name"], service["metadata"]["name"], "{file}");
        assert_eq!(
            target["namespace"], service["metadata"]["namespace"],
            "{file}"
        );
        assert_eq!(target["path"], "/mutate", "{file}");
        assert_eq!(
            target["port"], service["spec"]["ports"][0]["port"],
            "{file}"
        );
    }
}

#[test]
fn the_two_registrations_differ_only_in_where_the_ca_bundle_comes_from() {
    let all = manifests();
    let [(_, manual), (_, cert_manager)] = webhook_configurations(&all);
    assert_eq!(
        manual["webhooks"][0]["clientConfig"]["caBundle"],
        "${CA_BUNDLE}"
    );
    assert!(cert_manager["webhooks"][0]["clientConfig"]["caBundle"].is_null());

    let inject_from = str_of(
        &cert_manager["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "cert-manager.io/inject-ca-from",
    );
    let (namespace, name) = inject_from.split_once('/').unwrap();
    let certificate = named(&all, "Certificate", name);
    assert_eq!(certificate["metadata"]["namespace"], namespace);

    let strip = |config: &Value| {
        let mut config = config.clone();
        config["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
        config["webhooks"][0]["clientConfig"]
            .as_object_mut()
            .unwrap()
            .remove("caBundle");
        config
    };
    assert_eq!(strip(manual), strip(cert_manager));
}

#[test]
fn the_service_reaches_the_deployments_https_port() {
    let all = manifests();
    let service = object(&all, "service.yaml", "Service");
    let deployment = object(&all, "deployment.yaml", "Deployment");
    let pdb = object(&all, "poddisruptionbudget.yaml", "PodDisruptionBudget");
    let pod = &deployment["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    for (name, selector) in [
        ("service", &service["spec"]["selector"]),
        ("deployment", &deployment["spec"]["selector"]["matchLabels"]),
        ("pdb", &pdb["spec"]["selector"]["matchLabels"]),
    ] {
        for (key, value) in selector.as_object().unwrap() {
            assert_eq!(&labels[key], value, "{name} selector {key}");
        }
    }

    let container = &pod["spec"]["containers"][0];
    let target = &service["spec"]["ports"][0]["targetPort"];
    let port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| &p["name"] == target || &p["containerPort"] == target)
        .unwrap_or_else(|| panic!("no container port {target}"));
    let env: BTreeMap<&str, &str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|var| Some((var["name"].as_str()?, var["value"].as_str()?)))
        .collect();
    let listen = env["SIDECAR_INJECTOR_LISTEN"];
    assert!(
        listen.ends_with(&format!(":{}", port["containerPort"])),
        "listens on {listen}, the Service targets {port}"
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], "/healthz", "{probe}");
        assert_eq!(get["scheme"], "HTTPS", "{probe}");
        assert!(
            get["port"] == port["name"] || get["port"] == port["containerPort"],
            "{probe}"
        );
    }
}

#[test]
fn the_deployment_runs_locked_down_with_the_secret_cert_manager_writes() {
    let all = manifests();
    let deployment = object(&all, "deployment.yaml", "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "sidecar-injector:0.1.0");
    assert_eq!(container["args"], serde_json::json!(["serve"]));
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert!(container["resources"]["requests"].is_object());
    assert!(container["resources"]["limits"]["memory"].is_string());

    let env: BTreeMap<&str, &str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|var| Some((var["name"].as_str()?, var["value"].as_str()?)))
        .collect();
    assert!(!env["SIDECAR_IMAGE"].is_empty());
    if let Some(policy) = env.get("SIDECAR_IMAGE_PULL_POLICY") {
        assert!(["Always", "IfNotPresent", "Never"].contains(policy));
    }

    // The TLS files the server reads are in the volume of the secret.
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            env["SIDECAR_INJECTOR_TLS_CERT"].starts_with(str_of(&m["mountPath"], "mountPath"))
        })
        .expect("the certificate is in a mounted volume");
    assert!(env["SIDECAR_INJECTOR_TLS_KEY"].starts_with(str_of(&mount["mountPath"], "mountPath")));
    assert!(env["SIDECAR_INJECTOR_TLS_CERT"].ends_with("/tls.crt"));
    assert!(env["SIDECAR_INJECTOR_TLS_KEY"].ends_with("/tls.key"));
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    let secret = str_of(&volume["secret"]["secretName"], "secretName");

    let serving = object(&all, "cert-manager/certificate.yaml", "Certificate");
    assert_eq!(serving["spec"]["secretName"], secret);
}

#[test]
fn cert_manager_issues_for_the_names_the_certs_command_uses() {
    let all = manifests();
    let service = object(&all, "service.yaml", "Service");
    let expected = service_dns_names(
        str_of(&service["metadata"]["name"], "service name"),
        str_of(&service["metadata"]["namespace"], "service namespace"),
    )
    .unwrap();
    let serving = object(&all, "cert-manager/certificate.yaml", "Certificate");
    assert_eq!(serving["spec"]["dnsNames"], serde_json::json!(expected));

    // serving ← CA issuer ← CA certificate ← self-signed issuer
    let issuer = named(
        &all,
        "Issuer",
        str_of(&serving["spec"]["issuerRef"]["name"], "issuerRef"),
    );
    let ca_secret = str_of(&issuer["spec"]["ca"]["secretName"], "ca.secretName");
    let ca = all
        .values()
        .flatten()
        .find(|d| d["kind"] == "Certificate" && d["spec"]["secretName"] == ca_secret)
        .expect("a Certificate makes the CA secret");
    assert_eq!(ca["spec"]["isCA"], true);
    let root = named(
        &all,
        "Issuer",
        str_of(&ca["spec"]["issuerRef"]["name"], "issuerRef"),
    );
    assert!(root["spec"]["selfSigned"].is_object());
}

/// Every object in deploy/ of any kind in `kinds`, as `file: kind name`.
fn objects_of_kinds(all: &BTreeMap<String, Vec<Value>>, kinds: &[&str]) -> Vec<String> {
    all.iter()
        .flat_map(|(file, documents)| {
            documents
                .iter()
                .filter(|d| kinds.iter().any(|kind| d["kind"] == *kind))
                .map(move |d| {
                    let name = d["metadata"]["name"].as_str().unwrap_or_default();
                    format!("{file}: {} {name}", d["kind"].as_str().unwrap_or_default())
                })
        })
        .collect()
}

#[test]
fn the_injector_may_only_read_the_cluster_versions_and_only_its_pods_hold_the_token() {
    // The API server sends the whole pod in the AdmissionReview: the only thing the injector reads from
    // the API is the versions, for native-sidecar "auto" (GET /version, list nodes). Nothing more: a
    // token is something to steal.
    let all = manifests();
    let rbac = objects_of_kinds(
        &all,
        &["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"],
    );
    assert_eq!(
        rbac,
        [
            "rbac.yaml: ClusterRole sidecar-injector-cluster-versions",
            "rbac.yaml: ClusterRoleBinding sidecar-injector-cluster-versions"
        ]
    );
    let role = named(&all, "ClusterRole", "sidecar-injector-cluster-versions");
    assert_eq!(
        role["rules"],
        serde_json::json!([
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]},
            {"nonResourceURLs": ["/version"], "verbs": ["get"]}
        ]),
        "read the nodes and the version, nothing else"
    );
    assert!(role.get("aggregationRule").is_none());

    let accounts = objects_of_kinds(&all, &["ServiceAccount"]);
    assert_eq!(
        accounts,
        ["serviceaccount.yaml: ServiceAccount sidecar-injector"]
    );
    let account = object(&all, "serviceaccount.yaml", "ServiceAccount");
    // Only a pod that opts in (the injector's own) gets the account's token.
    assert_eq!(account["automountServiceAccountToken"], false);

    let binding = named(
        &all,
        "ClusterRoleBinding",
        "sidecar-injector-cluster-versions",
    );
    assert_eq!(
        binding["roleRef"],
        serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
            "name": "sidecar-injector-cluster-versions"})
    );
    let namespace = object(&all, "namespace.yaml", "Namespace");
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": account["metadata"]["name"],
            "namespace": namespace["metadata"]["name"]}])
    );

    let deployment = object(&all, "deployment.yaml", "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    assert_eq!(pod["automountServiceAccountToken"], true);
    let env = &pod["containers"][0]["env"];
    let native_sidecar = env
        .as_array()
        .unwrap()
        .iter()
        .find(|var| var["name"] == "SIDECAR_NATIVE_SIDECAR")
        .expect("SIDECAR_NATIVE_SIDECAR");
    assert_eq!(
        native_sidecar["value"], "auto",
        "the role is there for auto"
    );
}

#[test]
fn the_injector_pod_meets_the_restricted_pod_security_standard() {
    let all = manifests();
    // The namespace enforces it, so a manifest that drifts from it is refused by the cluster too.
    let namespace = object(&all, "namespace.yaml", "Namespace");
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );

    let deployment = object(&all, "deployment.yaml", "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let pod_security = &pod["securityContext"];
    assert_eq!(pod_security["runAsNonRoot"], true);
    for id in ["runAsUser", "runAsGroup"] {
        let value = pod_security[id].as_u64().unwrap_or_else(|| panic!("{id}"));
        assert_ne!(value, 0, "{id}");
    }
    assert_eq!(pod_security["seccompProfile"]["type"], "RuntimeDefault");
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        assert_ne!(pod[host], true, "{host}");
    }
    for volume in pod["volumes"].as_array().unwrap() {
        assert!(volume["hostPath"].is_null(), "{volume}");
    }

    let containers = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(pod["initContainers"].as_array().into_iter().flatten());
    for container in containers {
        let name = &container["name"];
        let security = &container["securityContext"];
        assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(
            security["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{name}"
        );
        assert!(security["capabilities"]["add"].is_null(), "{name}");
        assert_ne!(security["privileged"], true, "{name}");
        assert_ne!(security["runAsNonRoot"], false, "{name}");
        assert_ne!(security["runAsUser"], 0, "{name}");
        // Container-level seccomp may only narrow the pod's RuntimeDefault to a Localhost profile.
        let seccomp = &security["seccompProfile"]["type"];
        assert!(
            seccomp.is_null() || seccomp == "RuntimeDefault" || seccomp == "Localhost",
            "{name}: {seccomp}"
        );
        for port in container["ports"].as_array().into_iter().flatten() {
            assert!(port["hostPort"].is_null(), "{name}: {port}");
        }
    }
}
