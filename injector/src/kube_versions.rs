//! Whether a cluster can run native sidecars, from the versions its API server reports: its own (`GET
//! /version`) and every node's kubelet (`status.nodeInfo.kubeletVersion`). Native sidecars are on by
//! default from Kubernetes 1.29: the API server must keep an init container's `restartPolicy: Always`
//! (an older one drops the field, and the sidecar would block the pod's start), and the kubelet must run
//! it as a sidecar. One old node is enough for classic: the scheduler may put the pod there.
//!
//! This module only reads versions; asking the API server is [`crate::cluster_api`].

use crate::layout::{AutoLayout, SidecarLayout};

/// The first Kubernetes version with native sidecars on by default.
pub const NATIVE_SINCE: (u32, u32) = (1, 29);

/// What the API server reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterVersions {
    /// The API server's `gitVersion`, e.g. `v1.30.2` or `v1.29.3+k3s1`.
    pub server: String,
    pub nodes: Vec<NodeVersion>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeVersion {
    pub name: String,
    /// `status.nodeInfo.kubeletVersion`, empty when the node reports none.
    pub kubelet: String,
}

/// `(major, minor)` of a Kubernetes version as the API reports it: `v1.29.3`, `v1.29.3+k3s1`,
/// `v1.30.0-eks-123`, `v1.31.1-gke.1146000`. `None` for anything else.
pub fn major_minor(version: &str) -> Option<(u32, u32)> {
    let version = version.trim();
    let version = version.strip_prefix('v').unwrap_or(version);
    let mut parts = version.splitn(3, '.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?;
    // `1.30-eks`: a minor followed by a vendor suffix without a patch number.
    let digits = minor
        .find(|c: char| !c.is_ascii_digit())
        .map_or(minor, |end| &minor[..end]);
    Some((major, digits.parse().ok()?))
}

fn since() -> String {
    format!("{}.{}", NATIVE_SINCE.0, NATIVE_SINCE.1)
}

/// Why one version (of `what`: "version", "kubelet version") rules native sidecars out, as what
/// follows "reports"; `None` when it is recent enough.
fn too_old(what: &str, version: &str) -> Option<String> {
    match major_minor(version) {
        Some(found) if found >= NATIVE_SINCE => None,
        Some(_) => Some(format!("{what} {version}, older than {}", since())),
        None if version.trim().is_empty() => Some(format!("no {what}")),
        None => Some(format!(
            "{what} \"{version}\", which is not a Kubernetes version"
        )),
    }
}

/// The layout for `auto`: native when the API server and every node's kubelet are 1.29 or later.
pub fn layout_for(versions: &ClusterVersions) -> AutoLayout {
    let needs = format!(
        "native sidecars need {} on the API server and every node",
        since()
    );
    if let Some(why) = too_old("version", &versions.server) {
        return AutoLayout::new(
            SidecarLayout::Classic,
            format!("the API server reports {why}; {needs}"),
        );
    }
    let old: Vec<(&NodeVersion, String)> = versions
        .nodes
        .iter()
        .filter_map(|node| too_old("kubelet version", &node.kubelet).map(|why| (node, why)))
        .collect();
    if let Some((node, why)) = old.first() {
        let more = match old.len() - 1 {
            0 => String::new(),
            1 => " (and 1 more node)".to_owned(),
            n => format!(" (and {n} more nodes)"),
        };
        return AutoLayout::new(
            SidecarLayout::Classic,
            format!("node {} reports {why}{more}; {needs}", node.name),
        );
    }
    let nodes = match versions.nodes.len() {
        0 => "no node has joined yet".to_owned(),
        1 => "the kubelet of its 1 node is too".to_owned(),
        n => format!("the kubelets of all {n} nodes are too"),
    };
    AutoLayout::new(
        SidecarLayout::Native,
        format!(
            "the API server is {} ({} or later) and {nodes}",
            versions.server.trim(),
            since()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("v1.29.0", Some((1, 29)))]
    #[case("v1.29.3+k3s1", Some((1, 29)))]
    #[case("v1.30.0-eks-123", Some((1, 30)))]
    #[case("v1.31.1-gke.1146000", Some((1, 31)))]
    #[case("v1.28.5", Some((1, 28)))]
    #[case("1.33", Some((1, 33)))]
    #[case("v1.30-eks", Some((1, 30)))]
    #[case("v2.0.0", Some((2, 0)))]
    #[case("", None)]
    #[case("v1", None)]
    #[case("v1.x.0", None)]
    #[case("latest", None)]
    fn versions_as_distributions_report_them(
        #[case] version: &str,
        #[case] expected: Option<(u32, u32)>,
    ) {
        assert_eq!(major_minor(version), expected, "{version}");
    }

    fn cluster(server: &str, nodes: &[(&str, &str)]) -> ClusterVersions {
        ClusterVersions {
            server: server.to_owned(),
            nodes: nodes
                .iter()
                .map(|(name, kubelet)| NodeVersion {
                    name: (*name).to_owned(),
                    kubelet: (*kubelet).to_owned(),
                })
                .collect(),
        }
    }

    #[test]
    fn native_only_when_the_server_and_every_kubelet_are_recent_enough() {
        let recent = layout_for(&cluster(
            "v1.30.2",
            &[("a", "v1.29.3+k3s1"), ("b", "v1.30.0-eks-123")],
        ));
        assert_eq!(recent.layout, SidecarLayout::Native);
        assert_eq!(
            recent.reason,
            "the API server is v1.30.2 (1.29 or later) and the kubelets of all 2 nodes are too"
        );

        let old_nodes = layout_for(&cluster(
            "v1.30.2",
            &[("a", "v1.30.1"), ("b", "v1.28.5"), ("c", "v1.27.0")],
        ));
        assert_eq!(old_nodes.layout, SidecarLayout::Classic);
        assert_eq!(
            old_nodes.reason,
            "node b reports kubelet version v1.28.5, older than 1.29 (and 1 more node); native sidecars need 1.29 on the API server and every node"
        );

        let old_server = layout_for(&cluster("v1.28.9", &[("a", "v1.30.1")]));
        assert_eq!(old_server.layout, SidecarLayout::Classic);
        assert!(
            old_server
                .reason
                .starts_with("the API server reports version v1.28.9, older than 1.29;"),
            "{}",
            old_server.reason
        );

        let unreadable = layout_for(&cluster("v1.30.2", &[("a", "")]));
        assert_eq!(unreadable.layout, SidecarLayout::Classic);
        assert!(unreadable
            .reason
            .starts_with("node a reports no kubelet version;"));

        let empty = layout_for(&cluster("v1.31.0", &[]));
        assert_eq!(empty.layout, SidecarLayout::Native);
        assert!(empty.reason.ends_with("no node has joined yet"));
    }
}
