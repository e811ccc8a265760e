//! Resident memory of a server: VmRSS from /proc/PID/status, summed over the server's process and
//! all its descendants (nginx's master and workers, dante's mother and its children, squid and its
//! helpers). The sum counts pages that forked processes share once per process, so for multi-process
//! servers it overstates; the PSS sum (/proc/PID/smaps_rollup, each shared page split among the
//! processes sharing it) is given next to it for them. For one process the two differ only by the
//! shared libraries' pages.

use std::collections::HashMap;

use anyhow::Context as _;

/// Memory of a process tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Footprint {
    pub rss_kib: u64,
    pub pss_kib: u64,
    pub processes: u32,
}

/// VmRSS and PSS of `root` and every process descended from it.
pub fn tree_footprint(root: u32) -> anyhow::Result<Footprint> {
    let parents = parent_map()?;
    let mut footprint = Footprint::default();
    for pid in descendants(root, &parents) {
        // A process may exit between listing and reading; it then holds no memory.
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        footprint.rss_kib += parse_kib_field(&status, "VmRSS:").unwrap_or(0);
        footprint.pss_kib += std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
            .ok()
            .and_then(|rollup| parse_kib_field(&rollup, "Pss:"))
            .unwrap_or(0);
        footprint.processes += 1;
    }
    Ok(footprint)
}

/// `root` and every pid whose chain of parents leads to it.
pub fn descendants(root: u32, parents: &HashMap<u32, u32>) -> Vec<u32> {
    let mut members = vec![root];
    let mut index = 0;
    while let Some(&parent) = members.get(index) {
        let mut children: Vec<u32> = parents
            .iter()
            .filter(|(_, &p)| p == parent)
            .map(|(&pid, _)| pid)
            .collect();
        children.sort_unstable();
        members.extend(children);
        index += 1;
    }
    members
}

/// Every process's parent; a process that exits while /proc is read is left out.
fn parent_map() -> anyhow::Result<HashMap<u32, u32>> {
    let entries = std::fs::read_dir("/proc").context("cannot list /proc")?;
    Ok(entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, parse_stat_ppid(&stat)?))
        })
        .collect())
}

/// A `Name:   1234 kB` line, e.g. `VmRSS:` of /proc/PID/status (kernel threads and zombies have
/// none) or `Pss:` of /proc/PID/smaps_rollup.
pub fn parse_kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.trim();
        value.strip_suffix("kB")?.trim().parse().ok()
    })
}

/// The parent pid, the fourth field of /proc/PID/stat; the command name (second field, in
/// parentheses) may itself hold spaces and parentheses, so fields are counted from the last ')'.
pub fn parse_stat_ppid(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(
        "Name:\tnginx\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\n",
        "VmRSS:",
        Some(5120)
    )]
    #[case("Name:\tkthreadd\nThreads: 1\n", "VmRSS:", None)]
    #[case(
        "Rss:   3000 kB\nPss:   1234 kB\nPss_Anon:  1000 kB\n",
        "Pss:",
        Some(1234)
    )]
    fn kib_fields_are_read(#[case] text: &str, #[case] name: &str, #[case] expected: Option<u64>) {
        assert_eq!(parse_kib_field(text, name), expected);
    }

    #[rstest]
    #[case("1234 (nginx) S 1000 1234 1234 0", Some(1000))]
    #[case("77 (a b) (c)) R 42 77 77 0", Some(42))]
    #[case("garbage", None)]
    fn ppid_survives_odd_command_names(#[case] stat: &str, #[case] expected: Option<u32>) {
        assert_eq!(parse_stat_ppid(stat), expected);
    }

    #[test]
    fn descendants_follow_the_whole_tree() {
        let parents = HashMap::from([(2, 1), (3, 2), (4, 2), (5, 9), (6, 3)]);
        assert_eq!(descendants(1, &parents), vec![1, 2, 3, 4, 6]);
    }

    #[test]
    fn our_own_footprint_is_positive() {
        let footprint = tree_footprint(std::process::id()).unwrap();
        assert!(footprint.rss_kib > 0);
        assert!(footprint.pss_kib > 0);
        assert!(footprint.processes >= 1);
    }
}
