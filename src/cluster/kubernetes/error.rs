//! Turns kube-rs errors into [`ClusterError`]s that say what the user can act on: which verb,
//! resource and namespace RBAC denied and with which context, what was not found, whether the
//! API server throttled, failed or did not answer, and for a write, whether the object changed
//! since it was reviewed (409) or may have been changed after all (a timeout). The kube error is
//! kept as the cause.

use std::time::Duration;

use crate::cluster::ClusterError;

/// What a request was doing, for the error message.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub verb: &'static str,
    /// Plural resource name, as RBAC names it (`pods`, `deployments`, `pods/log`).
    pub resource: &'static str,
    /// Kind for "not found" messages (`pod`, `deployment`).
    pub kind: &'static str,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    /// The kubeconfig context in use.
    pub context: &'a str,
}

impl Request<'_> {
    /// Whether the request changes the cluster (then a timeout leaves its outcome unknown).
    fn writes(&self) -> bool {
        matches!(self.verb, "patch" | "update" | "create" | "delete")
    }

    fn describe(&self) -> String {
        let mut text = format!("{} {}", self.verb, self.resource);
        if let Some(name) = self.name {
            text.push_str(&format!(" {name:?}"));
        }
        if let Some(ns) = self.namespace {
            text.push_str(&format!(" in namespace {ns:?}"));
        }
        text
    }
}

/// The request took longer than `--api-timeout`. A write may still have been made: the API
/// server may have stored it after the client stopped waiting.
pub fn timeout(request: &Request<'_>, after: Duration) -> ClusterError {
    let outcome = if request.writes() {
        format!(
            "; the change may have been made anyway: read the {} again before retrying",
            request.kind
        )
    } else {
        String::new()
    };
    ClusterError::Timeout {
        operation: format!(
            "{} (context {:?}); the API server did not answer in time, raise --api-timeout if it is slow{outcome}",
            request.describe(),
            request.context
        ),
        after,
    }
}

/// The object is not at the version the write was reviewed against (`detail` says how we
/// know): nothing was changed.
pub fn conflict(request: &Request<'_>, detail: &str) -> ClusterError {
    let mut object = request.kind.to_string();
    if let Some(name) = request.name {
        object.push_str(&format!(" {name:?}"));
    }
    if let Some(ns) = request.namespace {
        object.push_str(&format!(" in namespace {ns:?}"));
    }
    ClusterError::Conflict {
        message: format!(
            "the {object} changed since it was reviewed, so the change was not made ({detail}); read it again and review the change anew"
        ),
    }
}

pub fn from_kube(request: &Request<'_>, error: kube::Error) -> ClusterError {
    match error {
        kube::Error::Api(status) => {
            let message = status.message.clone();
            match status.code {
                404 => ClusterError::NotFound {
                    kind: request.kind,
                    name: request.name.unwrap_or_default().to_string(),
                    namespace: request.namespace.map(str::to_string),
                    existing: None,
                },
                403 => ClusterError::Forbidden {
                    verb: request.verb,
                    resource: request.resource,
                    namespace: request.namespace.map(str::to_string),
                    message: Some(format!(
                        "RBAC denied it to context {:?}: {message}",
                        request.context
                    )),
                },
                401 => ClusterError::Unavailable {
                    message: format!(
                        "the API server rejected the credentials of context {:?} (401 Unauthorized: {message}); refresh them (e.g. log in again) and retry",
                        request.context
                    ),
                    cause: Some(Box::new(kube::Error::Api(status))),
                },
                429 => ClusterError::Unavailable {
                    message: format!(
                        "the API server is throttling requests (429 Too Many Requests) while trying to {}; retry in a few seconds",
                        request.describe()
                    ),
                    cause: Some(Box::new(kube::Error::Api(status))),
                },
                // A `metadata.resourceVersion` precondition that no longer holds.
                409 => conflict(request, &format!("the API server answered 409: {message}")),
                400 | 422 => ClusterError::Invalid(format!(
                    "the API server refused to {}: {message}",
                    request.describe()
                )),
                code if code >= 500 => ClusterError::Unavailable {
                    message: format!(
                        "the API server failed to {} ({code} {}: {message}); retry, and check the API server's health if it persists",
                        request.describe(),
                        status.reason
                    ),
                    cause: Some(Box::new(kube::Error::Api(status))),
                },
                code => ClusterError::Other {
                    message: format!(
                        "the API server answered {code} {} to {}: {message}",
                        status.reason,
                        request.describe()
                    ),
                    cause: Some(Box::new(kube::Error::Api(status))),
                },
            }
        }
        error @ (kube::Error::HyperError(_) | kube::Error::Service(_)) => {
            ClusterError::Unavailable {
                message: format!(
                    "cannot reach the API server of context {:?} to {}: {}",
                    request.context,
                    request.describe(),
                    root_cause(&error)
                ),
                cause: Some(Box::new(error)),
            }
        }
        other => ClusterError::Other {
            message: format!("failed to {}: {other}", request.describe()),
            cause: Some(Box::new(other)),
        },
    }
}

/// The innermost cause's text ("Connection refused (os error 111)"), which is what says why.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request<'static> {
        Request {
            verb: "list",
            resource: "pods",
            kind: "pod",
            namespace: Some("payments"),
            name: None,
            context: "viewer",
        }
    }

    fn status(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            reason: reason.into(),
            message: format!("{reason} message"),
            ..kube::core::Status::failure(&format!("{reason} message"), reason)
        }))
    }

    #[test]
    fn statuses_read_as_what_to_do() {
        let forbidden = from_kube(&request(), status(403, "Forbidden")).to_string();
        assert!(
            forbidden.contains("may not list pods in namespace \"payments\""),
            "{forbidden}"
        );
        assert!(forbidden.contains("context \"viewer\""), "{forbidden}");
        let throttled = from_kube(&request(), status(429, "TooManyRequests")).to_string();
        assert!(
            throttled.contains("429") && throttled.contains("retry"),
            "{throttled}"
        );
        let failed = from_kube(&request(), status(503, "ServiceUnavailable")).to_string();
        assert!(
            failed.contains("503") && failed.contains("unavailable"),
            "{failed}"
        );
        assert!(matches!(
            from_kube(&request(), status(404, "NotFound")),
            ClusterError::NotFound { kind: "pod", .. }
        ));
        assert!(matches!(
            from_kube(&request(), status(400, "BadRequest")),
            ClusterError::Invalid(_)
        ));
        let timed_out = timeout(&request(), Duration::from_secs(10)).to_string();
        assert!(timed_out.contains("--api-timeout"), "{timed_out}");
        assert!(!timed_out.contains("may have been made"), "{timed_out}");
    }

    fn patch() -> Request<'static> {
        Request {
            verb: "patch",
            resource: "deployments",
            kind: "deployment",
            namespace: Some("payments"),
            name: Some("checkout"),
            context: "viewer",
        }
    }

    #[test]
    fn write_statuses_read_as_what_to_do() {
        match from_kube(&patch(), status(409, "Conflict")) {
            ClusterError::Conflict { message } => {
                assert!(
                    message.contains("deployment \"checkout\" in namespace \"payments\" changed since it was reviewed"),
                    "{message}"
                );
                assert!(message.contains("review the change anew"), "{message}");
                assert!(message.contains("Conflict message"), "{message}");
            }
            other => panic!("409 read as {other:?}"),
        }
        assert!(matches!(
            from_kube(&patch(), status(403, "Forbidden")),
            ClusterError::Forbidden {
                verb: "patch",
                resource: "deployments",
                ..
            }
        ));
        match from_kube(&patch(), status(422, "Invalid")) {
            ClusterError::Invalid(message) => {
                assert!(message.contains("Invalid message"), "{message}");
                assert!(message.contains("patch deployments"), "{message}");
            }
            other => panic!("422 read as {other:?}"),
        }
        assert!(matches!(
            from_kube(&patch(), status(404, "NotFound")),
            ClusterError::NotFound { kind: "deployment", ref name, .. } if name == "checkout"
        ));
        let timed_out = timeout(&patch(), Duration::from_secs(10)).to_string();
        assert!(
            timed_out.contains("may have been made anyway: read the deployment again"),
            "{timed_out}"
        );
    }
}
