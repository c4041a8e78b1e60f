//! Which backend serves (`--backend demo|kube|auto`) and how the kube backend connects: the
//! kubeconfig file and context, or the in-cluster service account. Deciding reads files only;
//! nothing here talks to the network, so start-up never waits for a cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cluster::prometheus::Prometheus;

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// A Kubernetes API server when a kubeconfig or in-cluster configuration is found, the
    /// embedded demo cluster otherwise.
    Auto,
    /// The embedded demo cluster (or --demo-fixtures).
    Demo,
    /// A Kubernetes API server (kubeconfig or in-cluster).
    Kube,
}

/// How to reach the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeSource {
    /// A kubeconfig file (the first of `KUBECONFIG`'s list, or `--kubeconfig`, or
    /// `~/.kube/config`).
    Kubeconfig(PathBuf),
    /// The pod's service account (`KUBERNETES_SERVICE_HOST` and the mounted token).
    InCluster,
}

/// The kube backend's settings.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    pub source: KubeSource,
    /// `None`: the kubeconfig's current context.
    pub context: Option<String>,
    /// Longest one API request may take (`--api-timeout`).
    pub api_timeout: Duration,
    /// `--namespaces`: the only namespaces the server reads; `None` allows all.
    pub namespaces: Option<Vec<String>>,
    /// `--prometheus`: where service metrics and alerts come from (this context only).
    pub prometheus: Option<Prometheus>,
}

impl KubeSettings {
    pub const DEFAULT_API_TIMEOUT_SECS: u64 = 10;
}

/// The backend chosen, and why, in words for stderr and `system://health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selected {
    Demo { why: String },
    Kube { source: KubeSource, why: String },
}

const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Decides the backend. `kubeconfig_flag` is `--kubeconfig`; `kubeconfig_env` is `KUBECONFIG`
/// (a path list); `home` is the user's home directory; `in_cluster` whether the in-cluster
/// environment is present. Passed in, so tests decide without touching the real environment.
pub fn select(
    choice: BackendChoice,
    kubeconfig_flag: Option<&Path>,
    kubeconfig_env: Option<&str>,
    home: Option<&Path>,
    in_cluster: bool,
) -> Result<Selected, String> {
    if choice == BackendChoice::Demo {
        return Ok(Selected::Demo {
            why: "--backend demo".into(),
        });
    }
    let found = if let Some(path) = kubeconfig_flag {
        if !path.is_file() {
            return Err(format!(
                "--kubeconfig {}: no such file (give the path of a kubeconfig, or leave it out to use KUBECONFIG or ~/.kube/config)",
                path.display()
            ));
        }
        Some((
            KubeSource::Kubeconfig(path.to_path_buf()),
            format!("--kubeconfig {}", path.display()),
        ))
    } else if let Some(path) = kubeconfig_env
        .into_iter()
        .flat_map(std::env::split_paths)
        .find(|p| p.is_file())
    {
        let why = format!("KUBECONFIG names {}", path.display());
        Some((KubeSource::Kubeconfig(path), why))
    } else if let Some(path) = home
        .map(|h| h.join(".kube").join("config"))
        .filter(|p| p.is_file())
    {
        let why = format!("found {}", path.display());
        Some((KubeSource::Kubeconfig(path), why))
    } else if in_cluster {
        Some((
            KubeSource::InCluster,
            "running in a pod (KUBERNETES_SERVICE_HOST and a service account token)".into(),
        ))
    } else {
        None
    };
    match (choice, found) {
        (_, Some((source, why))) => Ok(Selected::Kube {
            source,
            why: if choice == BackendChoice::Auto {
                format!("--backend auto: {why}")
            } else {
                why
            },
        }),
        (BackendChoice::Kube, None) => Err(
            "--backend kube: no kubeconfig found (KUBECONFIG is unset or names no file, ~/.kube/config does not exist) and not running in a pod; pass --kubeconfig PATH"
                .into(),
        ),
        _ => Ok(Selected::Demo {
            why: "--backend auto: no kubeconfig (KUBECONFIG, ~/.kube/config) and not in a pod, so the embedded demo cluster".into(),
        }),
    }
}

/// Whether this process runs in a pod with a service account.
pub fn in_cluster_environment() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        && Path::new(SERVICE_ACCOUNT_TOKEN).is_file()
}

/// Parses `--namespaces a,b,c`.
pub fn parse_namespaces(text: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return Err(
            "--namespaces needs at least one namespace name (e.g. payments,checkout)".into(),
        );
    }
    if let Some(bad) = names.iter().find(|n| !is_dns_label(n)) {
        return Err(format!(
            "{bad:?} is not a namespace name (lowercase letters, digits and '-', at most 63 characters)"
        ));
    }
    Ok(names)
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_prefers_the_flag_then_kubeconfig_then_home_then_in_cluster_then_demo() {
        let dir = std::env::temp_dir().join(format!("sre-mcp-select-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(".kube")).unwrap();
        let home_config = dir.join(".kube").join("config");
        std::fs::write(&home_config, "apiVersion: v1\nkind: Config\n").unwrap();
        let env_config = dir.join("env-config");
        std::fs::write(&env_config, "apiVersion: v1\nkind: Config\n").unwrap();
        let auto = BackendChoice::Auto;

        let flag = select(auto, Some(&env_config), None, Some(&dir), true).unwrap();
        assert!(
            matches!(flag, Selected::Kube { source: KubeSource::Kubeconfig(ref p), .. } if p == &env_config)
        );
        let env = format!("/nonexistent:{}", env_config.display());
        let from_env = select(auto, None, Some(&env), Some(&dir), false).unwrap();
        assert!(matches!(from_env, Selected::Kube { ref why, .. } if why.contains("KUBECONFIG")));
        let from_home = select(auto, None, None, Some(&dir), false).unwrap();
        assert!(
            matches!(from_home, Selected::Kube { source: KubeSource::Kubeconfig(ref p), .. } if p == &home_config)
        );
        let nowhere = Path::new("/nonexistent-home");
        let in_pod = select(auto, None, None, Some(nowhere), true).unwrap();
        assert!(matches!(
            in_pod,
            Selected::Kube {
                source: KubeSource::InCluster,
                ..
            }
        ));
        let demo = select(auto, None, None, Some(nowhere), false).unwrap();
        assert!(matches!(demo, Selected::Demo { ref why } if why.contains("no kubeconfig")));
        let forced = select(
            BackendChoice::Demo,
            Some(&env_config),
            None,
            Some(&dir),
            true,
        )
        .unwrap();
        assert!(matches!(forced, Selected::Demo { .. }));
        let missing = select(BackendChoice::Kube, None, None, Some(nowhere), false).unwrap_err();
        assert!(missing.contains("--kubeconfig"), "{missing}");
        let bad_flag =
            select(auto, Some(Path::new("/no/such/file")), None, None, false).unwrap_err();
        assert!(bad_flag.contains("no such file"), "{bad_flag}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn namespace_lists() {
        assert_eq!(
            parse_namespaces("payments, checkout,").unwrap(),
            ["payments", "checkout"]
        );
        assert!(
            parse_namespaces(" , ")
                .unwrap_err()
                .contains("at least one")
        );
        assert!(
            parse_namespaces("Payments")
                .unwrap_err()
                .contains("not a namespace name")
        );
    }
}
