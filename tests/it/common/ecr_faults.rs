//! Amazon ECR's documented answers for the fault proxy ([`Fault`] constructors, kept apart from
//! `fault_proxy.rs` so each registry's answers live in their own file). Each reproduces what ECR's
//! registry endpoint sends, with the source it comes from.

use super::fault_proxy::Fault;

/// A JSON answer with the OCI error envelope `{"errors":[{"code","message"}]}`.
fn oci_error(status: u16, code: &str, message: &str) -> Fault {
    Fault::Status {
        status,
        headers: vec![(
            "Content-Type".into(),
            "application/json; charset=utf-8".into(),
        )],
        body: serde_json::json!({ "errors": [{ "code": code, "message": message }] }).to_string(),
    }
}

impl Fault {
    /// ECR refusing a manifest it cannot store: 405 `UNSUPPORTED` with its reason, the body
    /// reported in opcr-io/policy#149 (and chainguard-dev/apko#450).
    pub fn ecr_unsupported_manifest() -> Fault {
        oci_error(
            405,
            "UNSUPPORTED",
            "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Invalid JSON syntax'",
        )
    }

    /// ECR's 403 `DENIED` for an identity without `action` on `resource`: the message is IAM's
    /// ("User: … is not authorized to perform: ecr:X on resource: … because no identity-based
    /// policy allows the ecr:X action"), which ECR passes through.
    pub fn ecr_denied(action: &str, resource: &str) -> Fault {
        oci_error(
            403,
            "DENIED",
            &format!(
                "User: arn:aws:sts::123456789012:assumed-role/containerise/i-0123456789abcdef0 is not \
                 authorized to perform: {action} on resource: {resource} because no identity-based policy \
                 allows the {action} action"
            ),
        )
    }

    /// ECR's answer to a push into a repository at its image-count quota: 403 `DENIED` with
    /// "… already has the maximum allowed number of images which is '10000'"
    /// (aws/containers-roadmap#2159; the message as quoted in vllm-project/vllm#48065).
    pub fn ecr_repository_full(repository: &str, registry_id: &str) -> Fault {
        oci_error(
            403,
            "DENIED",
            &format!(
                "The repository with name '{repository}' in registry with id '{registry_id}' already has \
                 the maximum allowed number of images which is '10000'"
            ),
        )
    }

    /// ECR's answer to a manifest put under a tag that exists in a repository with immutable
    /// tags, even when it names the very same image: 400 `TAG_INVALID` (the message as quoted in
    /// osscontainertools/kaniko#204; the identical-image case in moby/buildkit#3776).
    pub fn ecr_immutable_tag(tag: &str, repository: &str) -> Fault {
        oci_error(
            400,
            "TAG_INVALID",
            &format!(
                "The image tag '{tag}' already exists in the '{repository}' repository and cannot be \
                 overwritten because the tag is immutable."
            ),
        )
    }
}
