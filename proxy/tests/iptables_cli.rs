//! `sidecar-proxy init-iptables` from the outside: the dry-run prints exactly the golden commands, settings
//! follow flag > environment > annotations file, and an invalid setting exits 2 with one exact line.
//! Nothing here touches iptables: every run is a `--dry-run` with an explicit backend, or is refused.

use std::path::PathBuf;
use std::process::{Command, Output};

use rstest::rstest;

// Only the environment helper: the rest of `support` (the in-process proxy) is not needed here.
#[path = "support/env.rs"]
mod env;

use env::remove_proxy_vars;

const BIN: &str = env!("CARGO_BIN_EXE_sidecar-proxy");

/// Runs the subcommand with no PROXY_* variables from the test's own environment, plus `env`.
fn init_iptables(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.arg("init-iptables").args(args);
    remove_proxy_vars(&mut command);
    command.envs(env.iter().copied());
    command.output().expect("run sidecar-proxy")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn golden(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/iptables")
        .join(format!("{name}.txt"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An annotations file as the kubelet writes it.
fn annotations_file(lines: &str) -> tempfile_path::TempFile {
    tempfile_path::TempFile::with(lines)
}

#[test]
fn dry_run_prints_the_golden_commands_for_both_families() {
    let output = init_iptables(&["--dry-run", "--iptables-backend", "legacy"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let v4 = golden("defaults").replace("iptables ", "iptables-legacy ");
    let v6 = golden("defaults").replace("iptables ", "ip6tables-legacy ");
    assert_eq!(
        stdout(&output),
        format!(
            "# sidecar-proxy init-iptables --dry-run: the commands it would run; nothing was changed\n\
             # backend: legacy (--iptables-backend)\n\
             # IPv4\n{v4}\
             # IPv6 (applied where ip6tables-legacy works in the pod)\n{v6}"
        )
    );
    assert_eq!(stderr(&output), "");
}

#[test]
fn dry_run_takes_every_option_as_a_flag() {
    let output = init_iptables(
        &[
            "--dry-run",
            "--iptables-backend=nft",
            "--proxy-in-port=5143",
            "--proxy-out-port=5140",
            "--proxy-uid=1000",
            "--admin-port=5191",
            "--ignore-inbound-ports=22",
            "--ignore-outbound-ports=443,8443-8444",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let v4 = golden("everything").replace("iptables ", "iptables-nft ");
    assert!(stdout(&output).contains(&format!("# IPv4\n{v4}# IPv6")));
}

#[test]
fn dry_run_takes_every_option_from_the_environment() {
    let output = init_iptables(
        &["--dry-run"],
        &[
            ("PROXY_IPTABLES_BACKEND", "nft"),
            ("PROXY_IN_PORT", "5143"),
            ("PROXY_OUT_PORT", "5140"),
            ("PROXY_UID", "1000"),
            ("PROXY_ADMIN_PORT", "5191"),
            ("PROXY_IGNORE_INBOUND_PORTS", "22"),
            ("PROXY_IGNORE_OUTBOUND_PORTS", "443,8443-8444"),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let v4 = golden("everything").replace("iptables ", "iptables-nft ");
    assert!(stdout(&output).contains(&format!("# IPv4\n{v4}# IPv6")));
}

/// The in-port and the ignored outbound ports the dry run would use.
fn chosen(args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let mut all = vec!["--dry-run", "--iptables-backend", "nft"];
    all.extend_from_slice(args);
    let output = init_iptables(&all, env);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let in_port = text
        .lines()
        .find_map(|l| l.strip_prefix("iptables-nft -t nat -A SPEEDSCALE_INBOUND_REDIRECT "))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .to_owned();
    let ignored = text
        .lines()
        .filter(|l| l.starts_with("iptables-nft "))
        .filter_map(|l| l.split("ignore-outbound-ports ").nth(1))
        .map(|rest| rest.split('\'').next().unwrap())
        .collect::<Vec<_>>()
        .join(",");
    (in_port, ignored)
}

#[test]
fn flag_beats_environment_beats_annotations_file() {
    let file = annotations_file(
        "sidecar.speedscale.com/proxy-in-port=\"6000\"\n\
         sidecar.speedscale.com/ignore-outbound-ports=\"5432, 6379-6380\"\n\
         sidecar.speedscale.com/ignore-inbound-ports=\"\"\n",
    );
    let path = file.path();
    assert_eq!(
        chosen(&["--annotations", path], &[]),
        ("6000".into(), "5432,6379-6380".into())
    );
    assert_eq!(
        chosen(
            &[],
            &[("PROXY_ANNOTATIONS", path), ("PROXY_IN_PORT", "5000")]
        ),
        ("5000".into(), "5432,6379-6380".into())
    );
    assert_eq!(
        chosen(
            &["--annotations", path, "--proxy-in-port", "7000"],
            &[
                ("PROXY_IN_PORT", "5000"),
                ("PROXY_IGNORE_OUTBOUND_PORTS", "25")
            ]
        ),
        ("7000".into(), "25".into())
    );
}

const ALLOWED: &str = "allowed values are comma-separated ports 1-65535 and ranges low-high with low <= high, like 22,8000-8100 (empty for none)";

#[rstest]
#[case::flag(&["--ignore-inbound-ports", "22,ssh"], &[], "--ignore-inbound-ports \"22,ssh\": \"ssh\" is not a port number")]
#[case::env(&[], &[("PROXY_IGNORE_OUTBOUND_PORTS", "8100-8000")], "PROXY_IGNORE_OUTBOUND_PORTS \"8100-8000\": range \"8100-8000\" has its low port above its high port")]
#[case::zero(&["--ignore-outbound-ports=0"], &[], "--ignore-outbound-ports \"0\": port 0 is outside 1-65535")]
#[case::empty_entry(&["--ignore-inbound-ports=22,,80"], &[], "--ignore-inbound-ports \"22,,80\": an entry between commas is empty")]
fn an_invalid_list_exits_2_with_one_line(
    #[case] args: &[&str],
    #[case] env: &[(&str, &str)],
    #[case] what: &str,
    #[values(true, false)] dry_run: bool,
) {
    let mut all = args.to_vec();
    if dry_run {
        all.push("--dry-run");
    }
    let output = init_iptables(&all, env);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        format!("sidecar-proxy: invalid {what}; {ALLOWED}\n")
    );
    assert_eq!(stdout(&output), "");
}

#[test]
fn an_invalid_list_in_the_annotations_file_is_named_by_its_key() {
    let file = annotations_file("sidecar.speedscale.com/ignore-outbound-ports=\"443,65536\"\n");
    let output = init_iptables(&["--dry-run", "--annotations", file.path()], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        format!("sidecar-proxy: invalid sidecar.speedscale.com/ignore-outbound-ports \"443,65536\": port 65536 is outside 1-65535; {ALLOWED}\n")
    );
}

#[rstest]
#[case(&["--proxy-in-port", "0"], "sidecar-proxy: invalid --proxy-in-port \"0\": allowed values are port numbers 1-65535\n")]
#[case(&["--proxy-out-port", "4143"], "sidecar-proxy: invalid --proxy-out-port \"4143\": proxy-in-port (default) is also 4143, and the inbound and outbound listeners need different ports\n")]
fn invalid_ports_exit_2_with_one_line(#[case] args: &[&str], #[case] message: &str) {
    let output = init_iptables(args, &[]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stderr(&output), message);
}

/// A file deleted when the test ends, without a tempfile dependency.
mod tempfile_path {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct TempFile(PathBuf, String);

    impl TempFile {
        pub fn with(contents: &str) -> TempFile {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "sidecar-iptables-cli-{}-{}.annotations",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&path, contents).unwrap();
            let text = path.to_str().unwrap().to_owned();
            TempFile(path, text)
        }

        pub fn path(&self) -> &str {
            &self.1
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}
