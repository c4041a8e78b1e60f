//! The demo's scheduler: places a new pod on a node with room for its memory request,
//! spreading a deployment's pods, or says why none fits in the scheduler's own words. Only
//! memory is fitted: the fixtures' memory requests add up per node (that is how search-indexer's
//! 12Gi pod stays Pending), their CPU requests were never meant to.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Node, PodSpec};

use super::names;

/// Bytes in a Kubernetes memory quantity (`384Mi`, `12Gi`, `15334504Ki`, `1G`, `1e9`).
pub fn bytes(quantity: &str) -> Option<f64> {
    let q = quantity.trim();
    let split = q
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(q.len());
    let (number, unit) = q.split_at(split);
    let value: f64 = number.parse().ok()?;
    let factor = match unit {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        _ => return None,
    };
    Some(value * factor)
}

/// The memory a pod asks for: its containers' requests (a limit stands in for a missing
/// request, as the API server defaults it).
pub fn memory_request(spec: &PodSpec) -> f64 {
    spec.containers
        .iter()
        .filter_map(|c| {
            let r = c.resources.as_ref()?;
            let get = |m: &Option<std::collections::BTreeMap<String, _>>| {
                m.as_ref()
                    .and_then(
                        |m: &std::collections::BTreeMap<
                            String,
                            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
                        >| m.get("memory"),
                    )
                    .and_then(|q| bytes(&q.0))
            };
            get(&r.requests).or_else(|| get(&r.limits))
        })
        .sum()
}

fn allocatable_memory(node: &Node) -> f64 {
    node.status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get("memory"))
        .and_then(|q| bytes(&q.0))
        .unwrap_or(0.0)
}

pub fn host_ip(node: &Node) -> String {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address.clone())
        .unwrap_or_default()
}

/// What the scheduler knows of a pod already placed.
pub struct Placed<'a> {
    pub node: &'a str,
    pub memory: f64,
    /// Of the same deployment as the pod being placed (spread across nodes).
    pub sibling: bool,
}

/// The node for a pod asking for `memory` bytes, or the FailedScheduling message.
pub fn place(
    nodes: &[Node],
    placed: &[Placed<'_>],
    memory: f64,
) -> Result<(String, String), String> {
    let mut best: Option<(usize, f64, &Node)> = None;
    let mut short = 0;
    let mut unschedulable = 0;
    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        if node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false)
        {
            unschedulable += 1;
            continue;
        }
        let on_node = placed.iter().filter(|p| p.node == name);
        let used: f64 = on_node.clone().map(|p| p.memory).sum();
        let siblings = on_node.filter(|p| p.sibling).count();
        let free = allocatable_memory(node) - used;
        if free < memory {
            short += 1;
            continue;
        }
        // Fewest pods of the same deployment first, then the most free memory.
        let better = best.is_none_or(|(s, f, _)| siblings < s || (siblings == s && free > f));
        if better {
            best = Some((siblings, free, node));
        }
    }
    if let Some((_, _, node)) = best {
        return Ok((
            node.metadata.name.clone().unwrap_or_default(),
            host_ip(node),
        ));
    }
    let mut reasons = Vec::new();
    if short > 0 {
        reasons.push(format!("{short} Insufficient memory"));
    }
    if unschedulable > 0 {
        reasons.push(format!("{unschedulable} node(s) were unschedulable"));
    }
    let n = nodes.len();
    Err(format!(
        "0/{n} nodes are available: {}. preemption: 0/{n} nodes are available: {n} No preemption victims found for incoming pod.",
        reasons.join(", ")
    ))
}

/// A free pod IP in the node's /24, chosen by hash.
pub fn pod_ip(host_ip: &str, used: &BTreeSet<String>, seed: &str) -> String {
    let prefix = host_ip.rsplit_once('.').map_or("10.0.0", |(p, _)| p);
    for attempt in 0..512u32 {
        let last = names::between(&[seed, &attempt.to_string()], 10, 250);
        let ip = format!("{prefix}.{last}");
        if !used.contains(&ip) && ip != host_ip {
            return ip;
        }
    }
    format!("{prefix}.251")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_quantities_parse() {
        assert_eq!(bytes("384Mi"), Some(384.0 * 1024.0 * 1024.0));
        assert_eq!(bytes("1G"), Some(1e9));
        assert_eq!(bytes("1e3"), Some(1000.0));
        assert_eq!(bytes("15334504Ki"), Some(15334504.0 * 1024.0));
        assert_eq!(bytes("12Xi"), None);
    }
}
