//! Port lists as the ignore annotations write them: `22,8000-8100`.
//!
//! `sidecar.speedscale.com/ignore-inbound-ports` and `ignore-outbound-ports` name traffic the iptables rules
//! leave alone. Parsing is pure so the injector can refuse a bad list at admission with the same message
//! the init container would print.

use std::fmt;

use super::quoted::{excerpt, Quoted};

/// One port (`low == high`) or an inclusive range of ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    low: u16,
    high: u16,
}

impl PortRange {
    /// A range of ports, `None` unless `1 <= low <= high`.
    pub fn new(low: u16, high: u16) -> Option<PortRange> {
        (low >= 1 && low <= high).then_some(PortRange { low, high })
    }

    pub fn low(self) -> u16 {
        self.low
    }

    pub fn high(self) -> u16 {
        self.high
    }

    /// How iptables' `--dport` writes it: `22` or `8000:8100`.
    pub fn to_iptables(self) -> String {
        if self.low == self.high {
            self.low.to_string()
        } else {
            format!("{}:{}", self.low, self.high)
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}-{}", self.low, self.high)
        }
    }
}

/// Ports and ranges in the order the user wrote them. Empty means "none".
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortList(Vec<PortRange>);

impl PortList {
    /// What a bad list is told it may contain, after the reason.
    pub const ALLOWED: &'static str = "comma-separated ports 1-65535 and ranges low-high with low <= high, like 22,8000-8100 (empty for none)";

    /// Parses `22, 8000-8100`; whitespace around entries and around `-` is tolerated; an empty or
    /// all-blank text is the empty list.
    pub fn parse(text: &str) -> Result<PortList, PortListProblem> {
        if text.trim().is_empty() {
            return Ok(PortList::default());
        }
        text.split(',')
            .map(parse_entry)
            .collect::<Result<_, _>>()
            .map(PortList)
    }

    pub fn ranges(&self) -> &[PortRange] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `port` is in the list.
    pub fn contains(&self, port: u16) -> bool {
        self.0
            .iter()
            .any(|range| range.low <= port && port <= range.high)
    }

    /// The list with each of `ports` not already in it appended, in the order given.
    pub fn with_ports(mut self, ports: impl IntoIterator<Item = u16>) -> PortList {
        for port in ports {
            if port >= 1 && !self.contains(port) {
                self.0.push(PortRange {
                    low: port,
                    high: port,
                });
            }
        }
        self
    }
}

impl fmt::Display for PortList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, range) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{range}")?;
        }
        Ok(())
    }
}

/// The first thing wrong with a port list, phrased to follow `invalid <setting> "<value>": `.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortListProblem {
    #[error("an entry between commas is empty")]
    EmptyEntry,
    #[error("{} is not a port number", Quoted(.0))]
    NotANumber(String),
    #[error("port {} is outside 1-65535", excerpt(.0))]
    OutOfRange(String),
    #[error("range {} has its low port above its high port", Quoted(.0))]
    Reversed(String),
}

fn parse_entry(entry: &str) -> Result<PortRange, PortListProblem> {
    let entry = entry.trim();
    if entry.is_empty() {
        return Err(PortListProblem::EmptyEntry);
    }
    match entry.split_once('-') {
        None => {
            let port = parse_port(entry)?;
            Ok(PortRange {
                low: port,
                high: port,
            })
        }
        Some((low, high)) => {
            let (low, high) = (parse_port(low.trim())?, parse_port(high.trim())?);
            PortRange::new(low, high).ok_or_else(|| PortListProblem::Reversed(entry.to_owned()))
        }
    }
}

fn parse_port(text: &str) -> Result<u16, PortListProblem> {
    // Only plain decimal digits, as for the other port settings: "+80" or "0x50" are typos.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PortListProblem::NotANumber(text.to_owned()));
    }
    match text.parse::<u32>() {
        Ok(port @ 1..=65535) => Ok(port as u16),
        _ => Err(PortListProblem::OutOfRange(text.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(text: &str) -> Vec<(u16, u16)> {
        PortList::parse(text)
            .unwrap()
            .ranges()
            .iter()
            .map(|r| (r.low(), r.high()))
            .collect()
    }

    #[test]
    fn ports_and_ranges_with_whitespace() {
        assert_eq!(
            ranges(" 22 , 8000 - 8100,443 "),
            [(22, 22), (8000, 8100), (443, 443)]
        );
        assert_eq!(ranges("1-65535"), [(1, 65535)]);
        assert_eq!(ranges("80-80"), [(80, 80)]);
    }

    #[test]
    fn empty_means_none() {
        assert!(PortList::parse("").unwrap().is_empty());
        assert!(PortList::parse("  ").unwrap().is_empty());
    }

    #[test]
    fn display_is_normalised_and_iptables_uses_a_colon() {
        let list = PortList::parse("22, 8000 -8100").unwrap();
        assert_eq!(list.to_string(), "22,8000-8100");
        assert_eq!(list.ranges()[1].to_iptables(), "8000:8100");
        assert_eq!(list.ranges()[0].to_iptables(), "22");
    }

    #[test]
    fn each_problem_is_named() {
        let problem = |text| PortList::parse(text).unwrap_err().to_string();
        assert_eq!(problem("22,,80"), "an entry between commas is empty");
        assert_eq!(problem("22,"), "an entry between commas is empty");
        assert_eq!(problem("ssh"), "\"ssh\" is not a port number");
        assert_eq!(problem("+80"), "\"+80\" is not a port number");
        assert_eq!(problem("8000-"), "\"\" is not a port number");
        assert_eq!(problem("1-2-3"), "\"2-3\" is not a port number");
        assert_eq!(problem("0"), "port 0 is outside 1-65535");
        assert_eq!(problem("65536"), "port 65536 is outside 1-65535");
        assert_eq!(
            problem("99999999999"),
            "port 99999999999 is outside 1-65535"
        );
        assert_eq!(
            problem("8100-8000"),
            "range \"8100-8000\" has its low port above its high port"
        );
    }
}
