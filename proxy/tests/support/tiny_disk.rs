//! A tmpfs of a test's own, a few hundred KB, to fill on purpose: what the capture file and the NATS
//! spool do when the disk is full. Mounting needs root (the tests run as root, as CI does).

use std::path::PathBuf;

/// Mounted at `.0` for the test and unmounted (lazily) when dropped.
pub struct TinyDisk(pub PathBuf);

impl TinyDisk {
    pub fn mount(at: PathBuf, size: &str) -> TinyDisk {
        std::fs::create_dir_all(&at).unwrap();
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&at)
            .status()
            .expect("run mount (the test runs as root, as CI does)");
        assert!(status.success(), "mount a tmpfs on {}", at.display());
        TinyDisk(at)
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}
