//! `sidecar-proxy ca create`: makes the capture CA that tls-out signs its leaf certificates with, as the
//! two files `kubectl create secret tls` takes.
//!
//! The key is created 0600 from the first byte (never written to a file anyone else could open first),
//! and existing files are left alone unless `--force`: overwriting a CA that apps already trust would
//! break them silently. A directory it creates is 0700 and the files get their modes exactly, whatever
//! the umask. An existing directory keeps its mode (it may be the user's working directory), but one that
//! other users can write to is refused: they could swap the key or the certificate after they are written.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

// The names the sidecar loads the CA by, which are the names a Kubernetes TLS secret gives its files.
use crate::tls_out::authority::{CERT_FILE, KEY_FILE};
use crate::tls_out::ca_create::{create_ca, CaPem};

const CERT_MODE: u32 = 0o644;
/// Set on the open file as well as asked of `open`, since the umask could remove bits from the latter.
const KEY_MODE: u32 = 0o600;
/// A directory `ca create` makes holds only the CA: nobody else needs to list it.
const DIR_MODE: u32 = 0o700;
/// Write permission for the group or for others.
const WRITABLE_BY_OTHERS: u32 = 0o022;
/// The sticky bit: in a directory with it (like /tmp), only a file's owner may rename or delete it.
const STICKY: u32 = 0o1000;
/// The Secret the injector mounts for tls-out.
const SECRET_NAME: &str = "sidecar-tls-out-ca";
const DEFAULT_NAME: &str = "sidecar-proxy capture CA";
/// One year. The CA can impersonate every host to the apps that trust it, and nothing revokes a private
/// CA (no client checks a CRL for it), so its expiry is what ends the use of a leaked key. A year is a
/// rotation period teams already keep for other credentials; `--days` sets up to ten years.
const DEFAULT_DAYS: u16 = 365;
const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// X.520's upper bound for a common name.
const MAX_NAME_CHARS: usize = 64;

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Make a new capture CA: DIR/tls.crt (certificate) and DIR/tls.key (private key, 0600)
    Create(CaCreateArgs),
}

#[derive(Debug, Args)]
pub struct CaCreateArgs {
    /// Directory to write tls.crt and tls.key to (created with mode 0700 if missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// The CA certificate's common name
    #[arg(long, value_name = "CN", default_value = DEFAULT_NAME, value_parser = parse_name)]
    pub name: String,

    /// Days the CA is valid (1 to 3650)
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_DAYS,
        value_parser = clap::value_parser!(u16).range(1..=3650)
    )]
    pub days: u16,

    /// Replace DIR/tls.crt and DIR/tls.key if they exist
    #[arg(long)]
    pub force: bool,
}

impl CaCommand {
    /// Runs the subcommand: 0 on success, 1 when the CA cannot be made or written.
    pub fn run(self) -> ExitCode {
        match self {
            CaCommand::Create(args) => match args.create() {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("sidecar-proxy: {message}");
                    ExitCode::FAILURE
                }
            },
        }
    }
}

impl CaCreateArgs {
    fn create(&self) -> Result<(), String> {
        let cert_path = self.out.join(CERT_FILE);
        let key_path = self.out.join(KEY_FILE);
        if !self.force {
            // Checked before anything is made, so a refusal leaves the directory as it was.
            for path in [&cert_path, &key_path] {
                if path.symlink_metadata().is_ok() {
                    return Err(format!(
                        "{} exists; pass --force to replace it (apps that trust the old CA stop accepting the sidecar's certificates)",
                        path.display()
                    ));
                }
            }
        }
        let existing_dir = check_existing_dir(&self.out)?;
        let ca = create_ca(&self.name, DAY * u32::from(self.days))
            .map_err(|e| format!("cannot make the CA: {e}"))?;
        if !existing_dir {
            create_private_dir(&self.out)
                .map_err(|e| format!("cannot create {}: {e}", self.out.display()))?;
        }
        self.write_pair(&ca, &cert_path, &key_path)?;

        eprintln!(
            "sidecar-proxy: wrote {} (private key, mode 0600)",
            key_path.display()
        );
        eprintln!(
            "sidecar-proxy: wrote {} (CA certificate \"{}\", valid for {} days)",
            cert_path.display(),
            self.name,
            self.days
        );
        eprintln!(
            "sidecar-proxy: make the Secret tls-out uses with: kubectl create secret tls {SECRET_NAME} --cert={} --key={}",
            shell_word(&cert_path),
            shell_word(&key_path)
        );
        Ok(())
    }

    /// Writes both files or, as far as it can, neither: a new CA half-written would pair a certificate
    /// with a key it does not belong to.
    fn write_pair(&self, ca: &CaPem, cert_path: &Path, key_path: &Path) -> Result<(), String> {
        let write = |path: &Path, contents: &str, mode: u32| {
            if self.force {
                replace_file(path, contents.as_bytes(), mode)
            } else {
                create_new_file(path, contents.as_bytes(), mode)
            }
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        write(key_path, &ca.key_pem, KEY_MODE)?;
        if let Err(message) = write(cert_path, &ca.cert_pem, CERT_MODE) {
            if !self.force {
                // Ours alone: without --force it did not exist before.
                let _ = std::fs::remove_file(key_path);
            }
            return Err(message);
        }
        Ok(())
    }
}

/// Whether `dir` exists already; an error when it is not a directory, or one other users may write to.
fn check_existing_dir(dir: &Path) -> Result<bool, String> {
    // Missing, or unreachable: creating it says why.
    let Ok(metadata) = std::fs::metadata(dir) else {
        return Ok(false);
    };
    if !metadata.is_dir() {
        return Err(format!(
            "cannot use {}: it is not a directory",
            dir.display()
        ));
    }
    let mode = metadata.permissions().mode();
    if mode & WRITABLE_BY_OTHERS != 0 && mode & STICKY == 0 {
        return Err(format!(
            "refusing to write the CA into {} (mode {:04o}): other users can write to it, so they could replace the key or the certificate; name a new directory (ca create makes it 0700) or remove their write access (chmod go-w)",
            dir.display(),
            mode & 0o7777
        ));
    }
    Ok(true)
}

/// Creates `dir` (and missing parents) with mode 0700, exactly: the umask could remove owner bits too.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
}

/// Creates `path`, which must not exist, with `mode` from the start.
fn create_new_file(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    // `mode` exactly, on the open file: the umask may have taken bits from it (never added any).
    let written = file
        .set_permissions(Permissions::from_mode(mode))
        .and_then(|()| file.write_all(contents))
        .and_then(|()| file.sync_all());
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

/// Replaces `path` by a new file created with `mode` and renamed over it: an existing file's mode (a
/// world-readable old key, say) is not inherited, and a failure leaves the old file whole.
fn replace_file(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let mut temp_name = path.file_name().unwrap_or_default().to_owned();
    temp_name.push(format!(".tmp-{}", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let _ = std::fs::remove_file(&temp);
    let written =
        create_new_file(&temp, contents, mode).and_then(|()| std::fs::rename(&temp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

fn parse_name(text: &str) -> Result<String, String> {
    let chars = text.chars().count();
    if text.trim().is_empty() || chars > MAX_NAME_CHARS || text.chars().any(char::is_control) {
        return Err(format!(
            "allowed: 1 to {MAX_NAME_CHARS} characters, not blank, no control characters"
        ));
    }
    Ok(text.to_owned())
}

/// `path` as one word for a POSIX shell, quoted only when it has to be, so the printed command can be
/// pasted as it is.
fn shell_word(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:@%=,".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        ca: CaCommand,
    }

    fn parse(args: &[&str]) -> Result<CaCreateArgs, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("ca").chain(args.iter().copied()))?;
        let CaCommand::Create(args) = cli.ca;
        Ok(args)
    }

    #[test]
    fn defaults() {
        let args = parse(&["create", "--out", "some/dir"]).unwrap();
        assert_eq!(args.out, PathBuf::from("some/dir"));
        assert_eq!(args.name, "sidecar-proxy capture CA");
        assert_eq!(args.days, 365);
        assert!(!args.force);
    }

    #[test]
    fn out_of_range_values_are_refused_by_name() {
        for (flag, value) in [
            ("--days", "0"),
            ("--days", "3651"),
            ("--days", "-1"),
            ("--name", ""),
            ("--name", "   "),
            ("--name", &"x".repeat(65)),
            ("--name", "a\nb"),
        ] {
            // `--flag=value`, so a value starting with `-` is a value rather than a flag.
            let error = parse(&["create", "--out", "d", &format!("{flag}={value}")])
                .err()
                .unwrap_or_else(|| panic!("{flag} {value:?} was accepted"));
            assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
            assert!(error.to_string().contains(flag), "{error}");
        }
        assert_eq!(
            parse(&["create"]).unwrap_err().kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&["create", "--out", "d", "--days", "3650"])
                .unwrap()
                .days,
            3650
        );
        assert!(parse(&["create", "--out", "d", "--name", &"x".repeat(64)]).is_ok());
    }

    #[test]
    fn paths_are_quoted_for_the_shell_only_when_needed() {
        assert_eq!(shell_word(Path::new("/tmp/ca/tls.crt")), "/tmp/ca/tls.crt");
        assert_eq!(shell_word(Path::new("my ca/tls.crt")), "'my ca/tls.crt'");
        assert_eq!(shell_word(Path::new("it's/tls.key")), r"'it'\''s/tls.key'");
        assert_eq!(shell_word(Path::new("$HOME/x")), "'$HOME/x'");
    }
}
