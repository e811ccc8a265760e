//! A check, run with the unit tests, that no module of this crate imports one that imports it back,
//! directly or through others: a circle makes the modules one tangle that can only be read, changed and
//! tested together. Each file is compiled in (`include_str!`), so the check reads exactly the sources being
//! built; a module missing from [`SOURCES`] fails the check. (This module, test code only, is not checked:
//! its examples name modules in strings.)

/// Every module's sources, by the module's name (`server` is its directory's files together).
const SOURCES: &[(&str, &[&str])] = &[
    ("annotations", &[include_str!("annotations.rs")]),
    ("app_env", &[include_str!("app_env.rs")]),
    ("capture_sink", &[include_str!("capture_sink.rs")]),
    ("capture_volume", &[include_str!("capture_volume.rs")]),
    ("certs", &[include_str!("certs.rs")]),
    ("cli", &[include_str!("cli.rs")]),
    ("cluster_api", &[include_str!("cluster_api.rs")]),
    ("containers", &[include_str!("containers.rs")]),
    ("denial", &[include_str!("denial.rs")]),
    ("kube_versions", &[include_str!("kube_versions.rs")]),
    ("layout", &[include_str!("layout.rs")]),
    ("mock", &[include_str!("mock.rs")]),
    ("offline", &[include_str!("offline.rs")]),
    ("patch", &[include_str!("patch.rs")]),
    ("plan", &[include_str!("plan.rs")]),
    ("probe_ports", &[include_str!("probe_ports.rs")]),
    ("resources", &[include_str!("resources.rs")]),
    ("review", &[include_str!("review.rs")]),
    (
        "server",
        &[
            include_str!("server/mod.rs"),
            include_str!("server/auto_layout.rs"),
            include_str!("server/routes.rs"),
        ],
    ),
    ("service_ports", &[include_str!("service_ports.rs")]),
    ("summary", &[include_str!("summary.rs")]),
    ("tls_out", &[include_str!("tls_out.rs")]),
    ("yaml_depth", &[include_str!("yaml_depth.rs")]),
];

/// The modules a module's code names as `crate::<module>` (comments left out: a doc link is no import).
fn imports(sources: &[&str], modules: &[&str]) -> Vec<String> {
    let code: String = sources
        .iter()
        .flat_map(|text| text.lines())
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found: Vec<String> = modules
        .iter()
        .filter(|module| {
            code.match_indices(&format!("crate::{module}"))
                .any(|(at, matched)| {
                    // Whole names only: `crate::plan` is not `crate::planner`.
                    let next = code[at + matched.len()..].chars().next();
                    !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
                })
        })
        .map(|module| (*module).to_owned())
        .collect();
    found.sort();
    found
}

/// A circle among the modules, as the path that closes it, if any.
fn find_circle(graph: &std::collections::BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    fn visit(
        module: &str,
        graph: &std::collections::BTreeMap<String, Vec<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| m == module) {
            let mut circle = path[start..].to_vec();
            circle.push(module.to_owned());
            return Some(circle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for next in graph.get(module).into_iter().flatten() {
            if next != module {
                if let Some(circle) = visit(next, graph, path, done) {
                    return Some(circle);
                }
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    graph
        .keys()
        .find_map(|module| visit(module, graph, &mut Vec::new(), &mut done))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn every_module_is_listed() {
        let listed: Vec<&str> = SOURCES.iter().map(|(name, _)| *name).collect();
        let declared: Vec<&str> = include_str!("lib.rs")
            .lines()
            .filter_map(|line| line.strip_prefix("pub mod ")?.strip_suffix(';'))
            .collect();
        assert_eq!(
            listed, declared,
            "SOURCES must list lib.rs's modules, in order"
        );
    }

    #[test]
    fn no_module_imports_one_that_imports_it_back() {
        let modules: Vec<&str> = SOURCES.iter().map(|(name, _)| *name).collect();
        let graph: BTreeMap<String, Vec<String>> = SOURCES
            .iter()
            .map(|(name, sources)| ((*name).to_owned(), imports(sources, &modules)))
            .collect();
        assert_eq!(find_circle(&graph), None, "imports: {graph:#?}");
    }

    #[test]
    fn a_circle_is_found_and_named() {
        let graph: BTreeMap<String, Vec<String>> = [
            ("containers", vec!["plan", "tls_out"]),
            ("plan", vec!["annotations", "containers"]),
            ("annotations", vec![]),
            ("tls_out", vec![]),
        ]
        .into_iter()
        .map(|(m, i)| (m.to_owned(), i.into_iter().map(str::to_owned).collect()))
        .collect();
        assert_eq!(
            find_circle(&graph),
            Some(vec![
                "containers".to_owned(),
                "plan".to_owned(),
                "containers".to_owned()
            ])
        );
        assert_eq!(
            imports(
                &["use crate::plan::Plan;\n// crate::tls_out\nuse crate::planner;"],
                &["plan", "tls_out"]
            ),
            ["plan"]
        );
    }
}
