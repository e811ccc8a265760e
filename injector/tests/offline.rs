//! `offline::inject` on a realistic manifest: a Namespace, a Deployment annotated for a dual proxy, its
//! Service and an annotated CronJob go in; the workloads come out with the sidecar and everything else as
//! it was.

use serde::Deserialize;
use serde_json::{json, Value};
use sidecar_injector::containers::SidecarOptions;
use sidecar_injector::offline;

const MANIFEST: &str = r#"# shop: the web frontend and its nightly report
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels:
    app: web
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
  template:
    metadata:
      labels:
        app: web
      annotations:
        prometheus.io/scrape: "true"
        sidecar.speedscale.com/inject: "true"
        sidecar.speedscale.com/proxy-type: "dual"
        sidecar.speedscale.com/proxy-protocol: "tcp:http"
        sidecar.speedscale.com/proxy-port: "8080"
        sidecar.speedscale.com/configure-app: "true"
    spec:
      serviceAccountName: web
      containers:
        - name: web
          image: registry.example.com/shop/web:1.4.2
          ports:
            - name: http
              containerPort: 8080
          env:
            - name: JAVA_TOOL_OPTIONS
              value: -Xmx512m
          readinessProbe:
            httpGet:
              path: /ready
              port: http
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector:
    app: web
  ports:
    - name: http
      port: 80
      targetPort: 4143
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly-report
  namespace: shop
spec:
  schedule: "0 3 * * *"
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      backoffLimit: 2
      template:
        metadata:
          annotations:
            sidecar.speedscale.com/inject: "true"
            sidecar.speedscale.com/proxy-type: "forward"
            sidecar.speedscale.com/proxy-protocol: "socks"
        spec:
          restartPolicy: OnFailure
          containers:
            - name: report
              image: registry.example.com/shop/report:2.0.0
              args: ["--since", "24h"]
"#;

fn options() -> SidecarOptions {
    SidecarOptions::new("registry.example.com/sidecar-proxy:0.1.0")
}

fn inject(input: &str) -> anyhow::Result<String> {
    let mut output = Vec::new();
    offline::inject(&mut input.as_bytes(), &mut output, &options())?;
    Ok(String::from_utf8(output)?)
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|document| Value::deserialize(document).expect("YAML"))
        .filter(|value| !value.is_null())
        .collect()
}

/// `name → value` of a container's plain environment variables.
fn env(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|var| {
            Some((
                var["name"].as_str()?.to_owned(),
                var["value"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

fn lookup<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

#[test]
fn a_manifest_comes_out_with_its_workloads_injected() {
    let output = inject(MANIFEST).expect("the manifest is injected");
    let input = documents(MANIFEST);
    let output = documents(&output);
    assert_eq!(output.len(), 4);
    let kinds: Vec<&str> = output.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Namespace", "Deployment", "Service", "CronJob"]);

    // Namespace and Service pass through unchanged.
    assert_eq!(output[0], input[0]);
    assert_eq!(output[2], input[2]);

    // The Deployment: everything outside the pod template as it was.
    let deployment = &output[1];
    let mut outside = deployment.clone();
    outside["spec"]["template"] = Value::Null;
    let mut outside_input = input[1].clone();
    outside_input["spec"]["template"] = Value::Null;
    assert_eq!(outside, outside_input);

    let template = &deployment["spec"]["template"];
    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["sidecar.speedscale.com/injected"], "0.1.0");
    assert_eq!(
        annotations["kubectl.kubernetes.io/default-container"],
        "web"
    );
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(
        template["metadata"]["labels"],
        json!({"app": "web", "sidecar.speedscale.com/injected": "true"})
    );
    let pod_spec = &template["spec"];
    assert_eq!(pod_spec["serviceAccountName"], "web");
    let containers = pod_spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2);

    let sidecar = &containers[0];
    assert_eq!(sidecar["name"], "sidecar-proxy");
    assert_eq!(sidecar["image"], "registry.example.com/sidecar-proxy:0.1.0");
    let sidecar_env = env(sidecar);
    assert_eq!(lookup(&sidecar_env, "PROXY_TYPE"), Some("dual"));
    assert_eq!(lookup(&sidecar_env, "PROXY_PROTOCOL"), Some("tcp:http"));
    assert_eq!(lookup(&sidecar_env, "PROXY_PORT"), Some("8080"));
    assert_eq!(lookup(&sidecar_env, "PROXY_ADMIN_PORT"), Some("4191"));
    // Rotation fitted to the capture volume's size limit (1Gi by default): six files of 128 MiB.
    assert_eq!(
        lookup(&sidecar_env, "PROXY_CAPTURE_ROTATE_SIZE"),
        Some("128MiB")
    );
    assert_eq!(lookup(&sidecar_env, "PROXY_CAPTURE_ROTATE_KEEP"), Some("5"));
    let ports: Vec<(&str, i64)> = sidecar["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("sidecar-in", 4143),
            ("sidecar-out", 4140),
            ("sidecar-admin", 4191)
        ]
    );
    assert_eq!(
        sidecar["readinessProbe"]["httpGet"]["port"],
        "sidecar-admin"
    );
    assert_eq!(sidecar["securityContext"]["runAsNonRoot"], true);

    // configure-app: the app keeps its own settings and gets the forward proxy's.
    let app = &containers[1];
    assert_eq!(app["name"], "web");
    assert_eq!(app["readinessProbe"]["httpGet"]["path"], "/ready");
    let app_env = env(app);
    assert_eq!(
        lookup(&app_env, "HTTP_PROXY"),
        Some("http://127.0.0.1:4140")
    );
    assert_eq!(
        lookup(&app_env, "JAVA_TOOL_OPTIONS"),
        Some("-Xmx512m -Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort=4140 -Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=4140")
    );
    // Not transparent: no iptables init container.
    assert!(pod_spec.get("initContainers").is_none());
    assert_eq!(
        pod_spec["volumes"],
        json!([{"name": "sidecar-capture", "emptyDir": {"sizeLimit": "1Gi"}}])
    );

    // The CronJob's job template.
    let cronjob = &output[3];
    assert_eq!(cronjob["spec"]["schedule"], "0 3 * * *");
    assert_eq!(cronjob["spec"]["concurrencyPolicy"], "Forbid");
    assert_eq!(cronjob["spec"]["jobTemplate"]["spec"]["backoffLimit"], 2);
    let job_pod = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(job_pod["restartPolicy"], "OnFailure");
    let names: Vec<&str> = job_pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sidecar-proxy", "report"]);
    let job_sidecar_env = env(&job_pod["containers"][0]);
    assert_eq!(lookup(&job_sidecar_env, "PROXY_TYPE"), Some("forward"));
    assert_eq!(lookup(&job_sidecar_env, "PROXY_PROTOCOL"), Some("socks"));
    assert_eq!(job_pod["containers"][1]["args"], json!(["--since", "24h"]));
}

#[test]
fn injecting_twice_changes_nothing() {
    let once = inject(MANIFEST).unwrap();
    assert_eq!(inject(&once).unwrap(), once);
}

#[test]
fn a_denied_workload_fails_the_run_naming_it_and_writes_nothing() {
    let bad = MANIFEST.replace(
        r#"sidecar.speedscale.com/proxy-protocol: "socks""#,
        r#"sidecar.speedscale.com/proxy-protocol: "tcp""#,
    );
    let mut output = Vec::new();
    let error = offline::inject(&mut bad.as_bytes(), &mut output, &options())
        .unwrap_err()
        .to_string();
    assert!(output.is_empty());
    assert!(
        error.starts_with(
            "document 4 (CronJob nightly-report): invalid sidecar.speedscale.com/proxy-protocol \"tcp\" for sidecar.speedscale.com/proxy-type \"forward\""
        ),
        "{error}"
    );
}

/// `configure-app` with a socks protocol, run for real: Python's urllib has no SOCKS, and a
/// `socks5://` proxy variable it reads fails every request (`unknown url type: socks5`). The app
/// container's environment exactly as `inject` writes it (nothing else, but `PATH`) must leave a
/// real `python3` able to fetch from an HTTP server on loopback, and its `getproxies()` must name no
/// SOCKS proxy, while Go's `HTTP_PROXY` still names the sidecar.
#[test]
fn configure_app_with_socks_leaves_python_urllib_working() {
    const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: job
  annotations:
    sidecar.speedscale.com/inject: "true"
    sidecar.speedscale.com/proxy-type: "forward"
    sidecar.speedscale.com/proxy-protocol: "socks"
    sidecar.speedscale.com/configure-app: "true"
spec:
  containers:
    - name: app
      image: python:3.11
"#;
    let output = inject(POD).unwrap();
    let pod = &documents(&output)[0];
    let app = pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|container| container["name"] == "app")
        .unwrap();
    let app_env = env(app);
    assert_eq!(
        lookup(&app_env, "HTTP_PROXY"),
        Some("socks5://127.0.0.1:4140"),
        "Go reads it: {app_env:?}"
    );

    // An HTTP server on loopback that answers one request.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = server.local_addr().unwrap();
    let serving = std::thread::spawn(move || {
        use std::io::{BufRead, BufReader, Write};
        let (mut stream, _) = server.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
            line.clear();
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
            .unwrap();
    });

    let script = format!(
        "import urllib.request\n\
         proxies = urllib.request.getproxies()\n\
         assert not any('socks' in value for value in proxies.values()), proxies\n\
         print(urllib.request.urlopen('http://{address}/', timeout=10).read().decode())\n"
    );
    let result = std::process::Command::new("python3")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(app_env.iter().map(|(name, value)| (name, value)))
        .args(["-c", &script])
        .output()
        .expect("python3 runs (scripts/test.sh installs it)");
    let stderr = String::from_utf8_lossy(&result.stderr);
    if !result.status.success() {
        // Unblock the server thread before failing.
        let _ = std::net::TcpStream::connect(address);
    }
    assert!(result.status.success(), "python3 failed: {stderr}");
    assert_eq!(String::from_utf8_lossy(&result.stdout).trim(), "hello");
    serving.join().unwrap();
}
