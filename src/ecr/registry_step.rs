//! Registry-endpoint failures in ECR terms: [`RegistryStep`] (each HTTP call of a push over the
//! OCI distribution API) → the IAM action ECR checks for it, and [`registry_denied`], the
//! [`EcrError`] for a `DENIED` / 403 at that step.

use super::errors::EcrError;
use super::host::EcrRepository;

/// A step of a push over the registry endpoint (OCI distribution API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryStep {
    /// `HEAD /v2/<repo>/blobs/<digest>`.
    HeadBlob,
    /// `POST /v2/<repo>/blobs/uploads/`.
    StartUpload,
    /// `PATCH <upload>`.
    PatchUpload,
    /// `PUT <upload>?digest=`.
    PutBlob,
    /// `PUT /v2/<repo>/manifests/<ref>`.
    PutManifest,
    /// `HEAD`/`GET /v2/<repo>/manifests/<ref>`.
    GetManifest,
    /// `GET /v2/<repo>/blobs/<digest>`.
    GetBlob,
    /// Getting the registry token.
    Token,
}

impl RegistryStep {
    /// The IAM action ECR checks for this step.
    pub fn iam_action(self) -> &'static str {
        match self {
            RegistryStep::HeadBlob => "ecr:BatchCheckLayerAvailability",
            RegistryStep::StartUpload => "ecr:InitiateLayerUpload",
            RegistryStep::PatchUpload => "ecr:UploadLayerPart",
            RegistryStep::PutBlob => "ecr:CompleteLayerUpload",
            RegistryStep::PutManifest => "ecr:PutImage",
            RegistryStep::GetManifest => "ecr:BatchGetImage",
            RegistryStep::GetBlob => "ecr:GetDownloadUrlForLayer",
            RegistryStep::Token => "ecr:GetAuthorizationToken",
        }
    }

    /// The HTTP call, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            RegistryStep::HeadBlob => "HEAD blob",
            RegistryStep::StartUpload => "POST blob upload",
            RegistryStep::PatchUpload => "PATCH blob upload",
            RegistryStep::PutBlob => "PUT blob upload",
            RegistryStep::PutManifest => "PUT manifest",
            RegistryStep::GetManifest => "GET manifest",
            RegistryStep::GetBlob => "GET blob",
            RegistryStep::Token => "GetAuthorizationToken",
        }
    }
}

/// The error for a registry-endpoint `DENIED` / 403 at `step` on `repository`: names the IAM
/// action ECR checked and the resource it is needed on. `item` is the blob or tag, `message` the
/// registry's own text (never a credential).
pub fn registry_denied(
    step: RegistryStep,
    repository: &EcrRepository,
    item: Option<&str>,
    message: &str,
) -> EcrError {
    let action = step.iam_action().to_string();
    let resource = if step == RegistryStep::Token {
        "*".to_string()
    } else {
        repository.arn()
    };
    let target = match item {
        Some(i) => format!("{repository} ({i})"),
        None => repository.to_string(),
    };
    EcrError::AccessDenied {
        operation: step.describe().to_string(),
        target,
        action,
        resource,
        repository: repository.to_string(),
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_names_action_and_arn() {
        let repo =
            EcrRepository::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/ec2-ecr-test")
                .unwrap();
        let e = registry_denied(
            RegistryStep::PutManifest,
            &repo,
            Some("v1"),
            "denied: not authorized",
        );
        let s = e.to_string();
        assert!(s.contains("`ecr:PutImage`"), "{s}");
        assert!(
            s.contains("arn:aws:ecr:us-east-1:123456789012:repository/ec2-ecr-test"),
            "{s}"
        );
        assert!(
            s.contains(
                "ocipush iam-policy 123456789012.dkr.ecr.us-east-1.amazonaws.com/ec2-ecr-test"
            ),
            "{s}"
        );
        assert_eq!(e.missing_action(), Some("ecr:PutImage"));
        let t = registry_denied(RegistryStep::Token, &repo, None, "x");
        assert!(t.to_string().contains("`ecr:GetAuthorizationToken` on `*`"));
        assert_eq!(
            RegistryStep::HeadBlob.iam_action(),
            "ecr:BatchCheckLayerAvailability"
        );
        assert_eq!(
            RegistryStep::PatchUpload.iam_action(),
            "ecr:UploadLayerPart"
        );
        assert_eq!(
            RegistryStep::PutBlob.iam_action(),
            "ecr:CompleteLayerUpload"
        );
        assert_eq!(
            RegistryStep::StartUpload.iam_action(),
            "ecr:InitiateLayerUpload"
        );
    }
}
