//! Registry-endpoint failures in ECR terms: [`RegistryStep`] (each HTTP call of a push over the
//! OCI distribution API) → the IAM action ECR checks for it, and [`registry_denied`], the
//! [`EcrError`] for a `DENIED` / 403 at that step: the action ECR names in its message when it
//! names one, else the step's; a full repository (image-count quota, also a 403 `DENIED`) as such.
//! [`public_registry_denied`] does the same for Amazon ECR Public, whose actions are the
//! `ecr-public:` ones and whose repository ARNs carry no region.

use super::errors::{EcrError, action_in_message, is_quota_message, resource_in_message};
use crate::ecr_host::{EcrPublicRepository, EcrRepository};

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

    /// The IAM action Amazon ECR Public checks for this step: the push steps and the token
    /// as `ecr-public:` actions (Service Authorization Reference, "Amazon Elastic Container
    /// Registry Public"); `None` for reads, which ECR Public serves to anyone.
    pub fn public_iam_action(self) -> Option<String> {
        match self {
            RegistryStep::GetManifest | RegistryStep::GetBlob => None,
            _ => Some(self.iam_action().replacen("ecr:", "ecr-public:", 1)),
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
/// action and the resource it is needed on. ECR's `DENIED` message names them itself ("User: … is
/// not authorized to perform: ecr:InitiateLayerUpload on resource: arn:…"): those win over the
/// step's guess (a mount, for one, is checked as `ecr:GetDownloadUrlForLayer` on the *source*).
/// A message saying the repository is full (image-count quota, aws/containers-roadmap#2159) is
/// [`EcrError::QuotaExceeded`], not a missing permission. `item` is the blob or tag, `message` the
/// registry's own text (never a credential).
pub fn registry_denied(
    step: RegistryStep,
    repository: &EcrRepository,
    item: Option<&str>,
    message: &str,
) -> EcrError {
    let target = match item {
        Some(i) => format!("{repository} ({i})"),
        None => repository.to_string(),
    };
    if is_quota_message(message) {
        return EcrError::QuotaExceeded {
            operation: step.describe().to_string(),
            target,
            message: message.to_string(),
        };
    }
    let named = action_in_message(message);
    let action = named
        .clone()
        .unwrap_or_else(|| step.iam_action().to_string());
    let resource = resource_in_message(message).unwrap_or_else(|| {
        if action == "ecr:GetAuthorizationToken" || !action.starts_with("ecr:") {
            "*".to_string()
        } else {
            repository.arn()
        }
    });
    let operation = match &named {
        Some(_) => step.describe().to_string(),
        // Not said by ECR: say it is the step's action.
        None => format!("{} (checked as {})", step.describe(), step.iam_action()),
    };
    EcrError::AccessDenied {
        operation,
        target,
        action,
        resource,
        repository: repository.to_string(),
        message: message.to_string(),
    }
}

/// [`registry_denied`] for Amazon ECR Public: the `ecr-public:` action of `step` (or the one
/// the message names) on the repository ARN the message names, else
/// `arn:aws:ecr-public::<account>:repository/<name>` with the account `*` (the registry alias
/// does not say which account owns it). `None` for a read step (reads need no permission).
pub fn public_registry_denied(
    step: RegistryStep,
    repository: &EcrPublicRepository,
    item: Option<&str>,
    message: &str,
) -> Option<EcrError> {
    let step_action = step.public_iam_action()?;
    let target = match item {
        Some(i) => format!("{repository} ({i})"),
        None => repository.to_string(),
    };
    if is_quota_message(message) {
        return Some(EcrError::QuotaExceeded {
            operation: step.describe().to_string(),
            target,
            message: message.to_string(),
        });
    }
    let named = action_in_message(message);
    let action = named.clone().unwrap_or_else(|| step_action.clone());
    let resource = resource_in_message(message).unwrap_or_else(|| {
        if action.ends_with(":GetAuthorizationToken") || !action.starts_with("ecr-public:") {
            "*".to_string()
        } else {
            repository.arn(None)
        }
    });
    let operation = match &named {
        Some(_) => step.describe().to_string(),
        None => format!("{} (checked as {step_action})", step.describe()),
    };
    Some(EcrError::AccessDenied {
        operation,
        target,
        action,
        resource,
        repository: repository.to_string(),
        message: message.to_string(),
    })
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

    #[test]
    fn the_action_ecr_names_wins() {
        let repo =
            EcrRepository::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/app").unwrap();
        // A blob upload start refused for the mount source: ECR names the read action on the
        // source repository, not InitiateLayerUpload on the target.
        let m = "HTTP 403 Forbidden, DENIED: User: arn:aws:sts::123456789012:assumed-role/r/i is not authorized \
                 to perform: ecr:GetDownloadUrlForLayer on resource: \
                 arn:aws:ecr:us-east-1:123456789012:repository/base because no identity-based policy allows \
                 the ecr:GetDownloadUrlForLayer action";
        let e = registry_denied(RegistryStep::StartUpload, &repo, Some("sha256:ab"), m);
        assert_eq!(e.missing_action(), Some("ecr:GetDownloadUrlForLayer"));
        let s = e.to_string();
        assert!(
            s.contains("on `arn:aws:ecr:us-east-1:123456789012:repository/base`"),
            "{s}"
        );
        assert!(!s.contains("checked as"), "{s}");
        // Nothing named: the step's action, said to be a guess from the request.
        let e = registry_denied(RegistryStep::PatchUpload, &repo, None, "HTTP 403 Forbidden");
        assert_eq!(e.missing_action(), Some("ecr:UploadLayerPart"));
        assert!(
            e.to_string().contains("checked as ecr:UploadLayerPart"),
            "{e}"
        );
    }

    #[test]
    fn a_full_repository_is_a_quota_not_a_permission() {
        let repo =
            EcrRepository::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/app").unwrap();
        let m = "HTTP 403 Forbidden, DENIED: The repository with name 'app' in registry with id \
                 '123456789012' already has the maximum allowed number of images which is '10000'";
        let e = registry_denied(RegistryStep::PutManifest, &repo, Some("v1"), m);
        assert!(matches!(e, EcrError::QuotaExceeded { .. }), "{e:?}");
        assert_eq!(e.missing_action(), None);
        let s = e.to_string();
        assert!(s.contains("quota") && !s.contains("ecr:PutImage"), "{s}");
    }

    #[test]
    fn public_denied_names_the_ecr_public_action_and_arn() {
        let repo = EcrPublicRepository::parse("public.ecr.aws/a1b2c3d4/app").unwrap();
        let e = public_registry_denied(
            RegistryStep::PutManifest,
            &repo,
            Some("v1"),
            "HTTP 403 Forbidden, DENIED: not authorized",
        )
        .unwrap();
        assert_eq!(e.missing_action(), Some("ecr-public:PutImage"));
        let s = e.to_string();
        assert!(
            s.contains("`ecr-public:PutImage` on `arn:aws:ecr-public::*:repository/app`"),
            "{s}"
        );
        assert!(
            s.contains("ocipush iam-policy public.ecr.aws/a1b2c3d4/app"),
            "{s}"
        );
        // The ARN ECR names wins (it carries the account).
        let m = "DENIED: User: arn:aws:iam::123456789012:user/u is not authorized to perform: \
                 ecr-public:InitiateLayerUpload on resource: arn:aws:ecr-public::123456789012:repository/app \
                 because no identity-based policy allows the ecr-public:InitiateLayerUpload action";
        let e = public_registry_denied(RegistryStep::StartUpload, &repo, None, m).unwrap();
        assert!(
            e.to_string().contains(
                "`ecr-public:InitiateLayerUpload` on `arn:aws:ecr-public::123456789012:repository/app`"
            ),
            "{e}"
        );
        assert!(public_registry_denied(RegistryStep::GetBlob, &repo, None, m).is_none());
        assert_eq!(
            RegistryStep::Token.public_iam_action().as_deref(),
            Some("ecr-public:GetAuthorizationToken")
        );
    }
}
