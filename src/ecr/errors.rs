//! ECR errors: [`EcrError`], the mapping of AWS SDK errors onto it (access denied → the missing
//! IAM action on the repository ARN, repository not found, immutable tag, throttling, no
//! credentials). Messages never carry a secret: only codes, AWS messages and names.

use std::error::Error as StdError;
use std::io;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_ecr::config::http::HttpResponse;
use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};

use crate::digest::Digest;
use crate::ecr_host::{EcrHostError, EcrRepository, PUBLIC_HINT};

/// Where the default credential chain looks, for "no credentials" messages.
pub const CREDENTIAL_SOURCES: &str = "environment variables (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), \
     the shared config and credentials files (~/.aws/config, ~/.aws/credentials: keys, SSO, credential_process, role_arn), \
     web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN), the ECS container endpoint, and EC2 instance metadata (IMDSv2)";

/// An ECR operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EcrError {
    /// The identity lacks an IAM permission.
    #[error(
        "{operation} on {target} is not allowed: the identity needs `{action}` on `{resource}`; \
         see `ocipush iam-policy {repository}` ({message})"
    )]
    AccessDenied {
        /// The API call or registry step (`PutImage`, `PUT manifest`).
        operation: String,
        /// What it was for (repository, blob or tag).
        target: String,
        /// The IAM action needed, e.g. `ecr:PutImage`.
        action: String,
        /// The resource it is needed on (a repository ARN, or `*`).
        resource: String,
        /// The repository reference, for `ocipush iam-policy`.
        repository: String,
        /// What AWS said.
        message: String,
    },
    /// The repository does not exist.
    #[error(
        "repository {name:?} does not exist in registry {registry} ({operation}): create it \
         (`aws ecr create-repository --repository-name {name} --region {region}`, or push with \
         `--create-repository`, which needs `ecr:CreateRepository`)"
    )]
    RepositoryNotFound {
        /// The call that found out.
        operation: String,
        /// The registry host.
        registry: String,
        /// The repository name.
        name: String,
        /// The region.
        region: String,
    },
    /// The tag exists and the repository's tags are immutable. ECR refuses even a re-push of the
    /// identical image (`ImageTagAlreadyExistsException`,
    /// <https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-tag-mutability.html>).
    #[error(
        "tag {tag:?} already exists in {repository}, whose tags are immutable ({message}); ECR refuses \
         even an identical re-push, so the tag may already be this very image{}: check with `aws ecr \
         describe-images --repository-name {name} --region {region} --image-ids imageTag={tag}`. If it is \
         another image, push under a new tag, or make the repository's tags mutable (`aws ecr \
         put-image-tag-mutability --repository-name {name} --region {region} --image-tag-mutability MUTABLE`)",
        ours.as_ref().map(|d| format!(" ({d})")).unwrap_or_default()
    )]
    ImmutableTag {
        /// The repository.
        repository: String,
        /// The repository name.
        name: String,
        /// The region.
        region: String,
        /// The tag.
        tag: String,
        /// This push's manifest digest, when known.
        ours: Option<String>,
        /// What AWS said.
        message: String,
    },
    /// The repository (or account) is at an ECR service quota: most often the number of images
    /// per repository (10,000 by default). ECR's registry endpoint answers this with 403 `DENIED`
    /// "… already has the maximum allowed number of images which is 'N'" (aws/containers-roadmap#2159),
    /// its API with `LimitExceededException`
    /// (<https://docs.aws.amazon.com/AmazonECR/latest/userguide/service-quotas.html>).
    #[error(
        "{operation} on {target} was refused because an ECR service quota is reached ({message}): this is not \
         a missing permission. Delete unused images (a lifecycle policy does it for you), or ask for a higher \
         quota in Service Quotas (\"Images per repository\")"
    )]
    QuotaExceeded {
        /// The API call or registry step.
        operation: String,
        /// What it was for.
        target: String,
        /// What AWS said.
        message: String,
    },
    /// The image has no layers, which ECR refuses (405 `UNSUPPORTED` on the manifest; "Image has
    /// to have at least 1 layer", werf/werf#2558): refused before anything is uploaded.
    #[error(
        "the image for {repository}{platform} has no layers (a `FROM scratch` stage with only metadata \
         instructions such as LABEL, ENV or CMD): Amazon ECR refuses an image without layers (405 UNSUPPORTED), \
         so nothing was uploaded. Give it a layer (e.g. `COPY` a file into it), or push it to another registry"
    )]
    NoLayers {
        /// The repository.
        repository: String,
        /// `" (platform linux/arm64)"` for a multi-platform build, else empty.
        platform: String,
    },
    /// Amazon ECR Public asked for credentials and none were sent: there is no docker login for
    /// `public.ecr.aws` and no ECR Public token was got from the AWS credential chain (`token`
    /// says why, when it was tried).
    #[error(
        "{what} on {repository}: Amazon ECR Public asked for credentials and none were sent ({detail}); {}",
        match token {
            Some(why) => format!("no ECR Public token could be had from the AWS credential chain: {why}; {PUBLIC_HINT}"),
            None => format!(
                "there is no docker login for public.ecr.aws and no ECR Public token came from the AWS \
                 credential chain: give ocipush an AWS identity allowed `ecr-public:GetAuthorizationToken` and \
                 `sts:GetServiceBearerToken` (`ocipush iam-policy {repository}`), {PUBLIC_HINT}"
            ),
        }
    )]
    PublicNeedsLogin {
        /// The step.
        what: String,
        /// The repository.
        repository: String,
        /// The registry's answer.
        detail: String,
        /// Why the ECR Public token could not be had, when ocipush tried to get one.
        token: Option<String>,
    },
    /// ECR Public's `GetAuthorizationToken` was refused. Its token needs two actions: the
    /// call's own and `sts:GetServiceBearerToken`, which the call makes for the caller, both on
    /// `*` (<https://docs.aws.amazon.com/AmazonECR/latest/public/public-registry-auth.html>); AWS
    /// names the one missing ("… is not authorized to perform: sts:GetServiceBearerToken on
    /// resource: * …", fluxcd/pkg#938).
    #[error(
        "GetAuthorizationToken of Amazon ECR Public (region us-east-1) is not allowed{}: an ECR Public token \
         needs both `ecr-public:GetAuthorizationToken` and `sts:GetServiceBearerToken` on `*`{}; see \
         `ocipush iam-policy public.ecr.aws/<registry alias>/<repository>` ({message})",
        identity.as_ref().map(|i| format!(" for {i}")).unwrap_or_default(),
        missing.as_ref().map(|a| format!(" (AWS says `{a}` is missing)")).unwrap_or_default()
    )]
    PublicTokenDenied {
        /// The action AWS named as missing, when it named one.
        missing: Option<String>,
        /// The identity asked for (`profile x`, `assuming role …`), when one was chosen.
        identity: Option<String>,
        /// What AWS said.
        message: String,
    },
    /// An option ocipush does not carry out for Amazon ECR Public.
    #[error("{option} cannot be used for {repository}: {why}")]
    PublicUnsupported {
        /// The option (`--ecr-api`, `--create-repository`, `--scan`).
        option: String,
        /// The ECR Public repository.
        repository: String,
        /// Why not, and what to do instead.
        why: String,
    },
    /// A layer part was below ECR's minimum part size.
    #[error(
        "uploading blob {blob} to {repository}: ECR rejected a part (part size {part_size} bytes) as too small ({message}); \
         every part but the last must be at least 5 MiB: this is a bug in ocipush's part sizing, please report it"
    )]
    LayerPartTooSmall {
        /// The repository.
        repository: String,
        /// The blob (its digest, or what it is when the digest is not known yet).
        blob: String,
        /// The part size used.
        part_size: u64,
        /// What AWS said.
        message: String,
    },
    /// A layer being built grew past what 4,200 parts can carry.
    #[error(
        "uploading blob {blob} to {repository}: the layer needs more than ECR's 4,200 parts per upload \
         ({sent} bytes sent so far); ECR's largest layer is 52,000 MiB: split the content over more layers"
    )]
    TooManyParts {
        /// The repository.
        repository: String,
        /// The blob.
        blob: String,
        /// Bytes sent when the limit was reached.
        sent: u64,
    },
    /// ECR throttled the call (after the SDK's own retries).
    #[error(
        "{operation} on {target} was throttled by ECR ({message}); retry in a moment, or push fewer blobs at once"
    )]
    Throttled {
        /// The API call.
        operation: String,
        /// What it was for.
        target: String,
        /// What AWS said.
        message: String,
    },
    /// No AWS credentials were found.
    #[error(
        "no AWS credentials for {operation} on {target}: tried {CREDENTIAL_SOURCES}{profile}; {message}. \
         Run on an instance or task with an IAM role, set AWS_PROFILE or --profile, export keys, or `aws sso login`"
    )]
    NoCredentials {
        /// The API call that needed them.
        operation: String,
        /// What it was for.
        target: String,
        /// `" (profile NAME)"` when one was chosen, else empty.
        profile: String,
        /// Why the chain failed.
        message: String,
    },
    /// A credential source was found but failed (IMDS unreachable, SSO session expired, AssumeRole denied).
    #[error(
        "AWS credentials for {operation} on {target} could not be loaded{profile}: {message}. \
         Check the source named above (for a role: its trust policy and `sts:AssumeRole` permission)"
    )]
    CredentialsFailed {
        /// The API call that needed them.
        operation: String,
        /// What it was for.
        target: String,
        /// `" (profile NAME)"` when one was chosen, else empty.
        profile: String,
        /// Why the source failed.
        message: String,
    },
    /// A blob's bytes could not be read.
    #[error("reading blob {blob} to upload to {repository}: {source}")]
    BlobRead {
        /// The repository.
        repository: String,
        /// The blob (its digest, or what it is when the digest is not known yet).
        blob: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A blob's bytes do not match its descriptor.
    #[error(
        "blob {expected} for {repository} has the wrong content: read {found_size} bytes with digest {found} \
         (descriptor says {expected_size} bytes); the local image is corrupt: rebuild it"
    )]
    BlobMismatch {
        /// The repository.
        repository: String,
        /// The descriptor's digest.
        expected: Digest,
        /// The descriptor's size.
        expected_size: u64,
        /// What was read.
        found: Digest,
        /// How many bytes were read.
        found_size: u64,
    },
    /// A manifest is not UTF-8 (PutImage takes a string).
    #[error(
        "the manifest for {repository}:{reference} is not UTF-8 text: ECR's PutImage cannot store it"
    )]
    ManifestNotUtf8 {
        /// The repository.
        repository: String,
        /// The tag or digest.
        reference: String,
    },
    /// The ECR answer lacked something it must have.
    #[error("{operation} on {target}: unexpected answer from ECR: {message}")]
    InvalidResponse {
        /// The API call.
        operation: String,
        /// What it was for.
        target: String,
        /// What was wrong.
        message: String,
    },
    /// Any other failure of an ECR/STS call.
    #[error("{operation} on {target} failed: {message}")]
    Api {
        /// The API call.
        operation: String,
        /// What it was for.
        target: String,
        /// The AWS error code, when there is one.
        code: Option<String>,
        /// What AWS (or the transport) said.
        message: String,
        /// Whether retrying may help (timeouts, 5xx, throttling).
        retryable: bool,
    },
    /// Not an ECR host or repository.
    #[error(transparent)]
    Host(#[from] EcrHostError),
}

impl EcrError {
    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            EcrError::Throttled { .. }
                | EcrError::Api {
                    retryable: true,
                    ..
                }
        )
    }

    /// The IAM action that was missing, for an access-denied error.
    pub fn missing_action(&self) -> Option<&str> {
        match self {
            EcrError::AccessDenied { action, .. } => Some(action),
            EcrError::PublicTokenDenied { missing, .. } => missing.as_deref(),
            _ => None,
        }
    }
}

/// What an ECR call was for, to name it in errors.
#[derive(Debug, Clone)]
pub(crate) struct CallContext<'a> {
    /// The API operation, e.g. `PutImage`.
    pub operation: &'static str,
    /// The repository (or, for the token, `None`: resource `*`).
    pub repository: Option<&'a EcrRepository>,
    /// Registry host (when there is no repository).
    pub registry: &'a str,
    /// What it was for beyond the repository: a blob digest or a tag.
    pub item: Option<String>,
    /// The identity asked for (`profile x`, `role arn:… with an external id`), for messages.
    pub identity: Option<String>,
}

impl CallContext<'_> {
    fn target(&self) -> String {
        let base = match self.repository {
            Some(r) => r.to_string(),
            None => self.registry.to_string(),
        };
        match &self.item {
            Some(i) => format!("{base} ({i})"),
            None => base,
        }
    }
}

/// The IAM action an ECR API operation needs.
pub(crate) fn action_of(operation: &str) -> String {
    format!("ecr:{operation}")
}

/// Map an SDK error of an ECR (or STS) call.
pub(crate) fn from_sdk<E>(err: SdkError<E, HttpResponse>, ctx: &CallContext<'_>) -> EcrError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let target = ctx.target();
    let operation = ctx.operation.to_string();
    if let Some(cred) = find_in_chain::<CredentialsError>(&err) {
        let profile = ctx
            .identity
            .as_ref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default();
        let message = chain_text(cred);
        return match cred {
            CredentialsError::CredentialsNotLoaded(_) => EcrError::NoCredentials {
                operation,
                target,
                profile,
                message,
            },
            _ => EcrError::CredentialsFailed {
                operation,
                target,
                profile,
                message,
            },
        };
    }
    let raw = err.raw_response();
    let status = raw.map(|r| r.status().as_u16());
    let body = raw
        .and_then(|r| r.body().bytes())
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let mut code = err.code().map(str::to_string);
    let mut aws_message = err.message().map(str::to_string);
    if code.is_none() && matches!(err, SdkError::ServiceError(_)) {
        // An answer the protocol parser did not understand (moto answers access denied as XML
        // to JSON-protocol calls): take the code and message from the body, else the status.
        code = xml_element(&body, "Code")
            .or_else(|| (status == Some(403)).then(|| "AccessDenied".to_string()));
        aws_message = xml_element(&body, "Message").or_else(|| {
            let excerpt: String = body.chars().take(300).collect();
            Some(format!(
                "HTTP {}: {}",
                status.unwrap_or_default(),
                excerpt.trim()
            ))
        });
    }
    let message = match (&aws_message, &err) {
        (Some(m), _) => m.clone(),
        // Never the raw response (verbose); the error chain of a transport failure is useful.
        (None, SdkError::ServiceError(_)) => format!("HTTP {}", status.unwrap_or_default()),
        (None, _) => chain_text(&err),
    };
    let repo_name = || {
        ctx.repository
            .map(|r| r.to_string())
            .unwrap_or_else(|| ctx.registry.to_string())
    };
    match code.as_deref() {
        Some(
            "AccessDenied"
            | "AccessDeniedException"
            | "UnauthorizedOperation"
            | "UnrecognizedClientException",
        ) => {
            let action = aws_message
                .as_deref()
                .and_then(action_in_message)
                .unwrap_or_else(|| action_of(ctx.operation));
            let resource = aws_message
                .as_deref()
                .and_then(resource_in_message)
                .unwrap_or_else(|| match ctx.repository {
                    Some(r)
                        if action != "ecr:GetAuthorizationToken" && action.starts_with("ecr:") =>
                    {
                        r.arn()
                    }
                    _ => "*".to_string(),
                });
            EcrError::AccessDenied {
                operation,
                target,
                action,
                resource,
                repository: repo_name(),
                message,
            }
        }
        Some("RepositoryNotFoundException") => match ctx.repository {
            Some(r) => EcrError::RepositoryNotFound {
                operation,
                registry: r.host.to_string(),
                name: r.name.clone(),
                region: r.host.region.clone(),
            },
            None => EcrError::Api {
                operation,
                target,
                code,
                message,
                retryable: false,
            },
        },
        Some("ImageTagAlreadyExistsException") => EcrError::ImmutableTag {
            repository: repo_name(),
            name: ctx.repository.map(|r| r.name.clone()).unwrap_or_default(),
            region: ctx
                .repository
                .map(|r| r.host.region.clone())
                .unwrap_or_default(),
            tag: ctx.item.clone().unwrap_or_default(),
            ours: None,
            message,
        },
        Some("LimitExceededException") => EcrError::QuotaExceeded {
            operation,
            target,
            message,
        },
        Some("ThrottlingException" | "Throttling" | "TooManyRequestsException") => {
            EcrError::Throttled {
                operation,
                target,
                message,
            }
        }
        _ => {
            let retryable = matches!(
                err,
                SdkError::TimeoutError(_) | SdkError::DispatchFailure(_)
            ) || err
                .raw_response()
                .is_some_and(|r| r.status().is_server_error());
            EcrError::Api {
                operation,
                target,
                code,
                message,
                retryable,
            }
        }
    }
}

/// An error and its sources, by `Display` only (never `Debug`: no raw requests or responses).
pub(crate) fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

/// The text of the first `<name>…</name>` in an XML error body.
fn xml_element(body: &str, name: &str) -> Option<String> {
    let (_, rest) = body.split_once(&format!("<{name}>"))?;
    let (value, _) = rest.split_once(&format!("</{name}>"))?;
    Some(value.trim().to_string()).filter(|v| !v.is_empty())
}

/// The `service:Action` named in an AWS access-denied message ("User: arn:… is not authorized to
/// perform: ecr:PutImage on resource: arn:… because no identity-based policy allows the
/// ecr:PutImage action"; the ECR registry endpoint puts the same text in its `DENIED` error).
pub(crate) fn action_in_message(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("perform: ")?;
    let action: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == ':' || *c == '-')
        .collect();
    let (service, name) = action.split_once(':')?;
    (!service.is_empty() && !name.is_empty() && !name.contains(':')).then_some(action)
}

/// The resource named in an AWS access-denied message ("… on resource: arn:aws:ecr:…:repository/x …").
pub(crate) fn resource_in_message(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("on resource: ")?;
    let resource: String = rest
        .trim_start()
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"' && *c != ',')
        .collect();
    resource.starts_with("arn:").then_some(resource)
}

/// Whether an ECR message says a service quota is reached: the image-count limit ("… already has
/// the maximum allowed number of images which is '10000'", aws/containers-roadmap#2159,
/// vllm-project/vllm#48065) or a generic "exceeded a service limit" (`LimitExceededException`).
pub(crate) fn is_quota_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("maximum allowed number of") || m.contains("exceeded a service limit")
}

fn find_in_chain<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service_error(
        code: &str,
        message: &str,
        status: u16,
    ) -> SdkError<aws_sdk_ecr::operation::put_image::PutImageError, HttpResponse> {
        let meta = aws_smithy_types::error::ErrorMetadata::builder()
            .code(code)
            .message(message)
            .build();
        let err = aws_sdk_ecr::operation::put_image::PutImageError::generic(meta);
        let raw = HttpResponse::new(
            status.try_into().unwrap(),
            aws_smithy_types::body::SdkBody::empty(),
        );
        SdkError::service_error(err, raw)
    }

    fn repo_ctx(repo: &EcrRepository) -> CallContext<'_> {
        CallContext {
            operation: "PutImage",
            repository: Some(repo),
            registry: "",
            item: Some("v1".into()),
            identity: None,
        }
    }

    #[test]
    fn sdk_errors_are_mapped() {
        let repo =
            EcrRepository::parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com/app").unwrap();
        let ctx = repo_ctx(&repo);
        let e = from_sdk(
            service_error(
                "AccessDeniedException",
                "User: arn:aws:sts::123456789012:assumed-role/r/i is not authorized to perform: ecr:PutImage on resource: x \
                 because no identity-based policy allows the ecr:PutImage action",
                400,
            ),
            &ctx,
        );
        assert_eq!(e.missing_action(), Some("ecr:PutImage"));
        assert!(
            e.to_string()
                .contains("`arn:aws:ecr:eu-west-1:123456789012:repository/app`"),
            "{e}"
        );

        let e = from_sdk(
            service_error("RepositoryNotFoundException", "no such repository", 400),
            &ctx,
        );
        assert!(matches!(e, EcrError::RepositoryNotFound { .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains("aws ecr create-repository --repository-name app --region eu-west-1"),
            "{e}"
        );

        let e = from_sdk(
            service_error("ImageTagAlreadyExistsException", "tag exists", 400),
            &ctx,
        );
        assert!(
            matches!(&e, EcrError::ImmutableTag { tag, .. } if tag == "v1"),
            "{e:?}"
        );
        assert!(!e.is_retryable());

        let e = from_sdk(service_error("ThrottlingException", "slow down", 400), &ctx);
        assert!(
            matches!(e, EcrError::Throttled { .. }) && e.is_retryable(),
            "{e:?}"
        );

        let e = from_sdk(service_error("ServerException", "oops", 500), &ctx);
        assert!(e.is_retryable(), "{e:?}");
        let e = from_sdk(service_error("InvalidParameterException", "bad", 400), &ctx);
        assert!(!e.is_retryable(), "{e:?}");
        assert!(
            e.to_string().contains(
                "PutImage on 123456789012.dkr.ecr.eu-west-1.amazonaws.com/app (v1) failed: bad"
            ),
            "{e}"
        );
    }

    #[test]
    fn unparsed_403_is_access_denied() {
        let repo =
            EcrRepository::parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com/app").unwrap();
        let meta = aws_smithy_types::error::ErrorMetadata::builder().build();
        let err = aws_sdk_ecr::operation::put_image::PutImageError::generic(meta);
        let body = "<ErrorResponse><Errors><Error><Code>AccessDenied</Code><Message>User: u is not authorized to perform: \
                    ecr:PutImage</Message></Error></Errors></ErrorResponse>";
        let raw = HttpResponse::new(
            403u16.try_into().unwrap(),
            aws_smithy_types::body::SdkBody::from(body),
        );
        let e = from_sdk(SdkError::service_error(err, raw), &repo_ctx(&repo));
        assert_eq!(e.missing_action(), Some("ecr:PutImage"), "{e:?}");
    }

    #[test]
    fn action_from_aws_message() {
        assert_eq!(
            action_in_message("User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: ecr:PutImage on resource: x")
                .as_deref(),
            Some("ecr:PutImage")
        );
        assert_eq!(action_in_message("nope"), None);
        assert_eq!(
            action_in_message("not authorized to perform: nothing"),
            None
        );
        assert_eq!(action_in_message("not authorized to perform: ecr:"), None);
        let m = "User: arn:aws:sts::123456789012:assumed-role/containerise/i-0 is not authorized to perform: \
                 ecr:InitiateLayerUpload on resource: arn:aws:ecr:us-east-1:123456789012:repository/ec2-ecr-test \
                 because no identity-based policy allows the ecr:InitiateLayerUpload action";
        assert_eq!(
            action_in_message(m).as_deref(),
            Some("ecr:InitiateLayerUpload")
        );
        assert_eq!(
            resource_in_message(m).as_deref(),
            Some("arn:aws:ecr:us-east-1:123456789012:repository/ec2-ecr-test")
        );
        assert_eq!(resource_in_message("on resource: x"), None);
    }

    #[test]
    fn quota_messages() {
        assert!(is_quota_message(
            "The repository with name 'app' in registry with id '123456789012' already has the maximum \
             allowed number of images which is '10000'"
        ));
        assert!(is_quota_message(
            "The operation did not succeed because it would have exceeded a service limit for your account."
        ));
        assert!(!is_quota_message("not authorized"));
        let repo =
            EcrRepository::parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com/app").unwrap();
        let e = from_sdk(
            service_error("LimitExceededException", "exceeded a service limit", 400),
            &repo_ctx(&repo),
        );
        assert!(matches!(e, EcrError::QuotaExceeded { .. }), "{e:?}");
        assert_eq!(e.missing_action(), None);
        assert!(e.to_string().contains("not a missing permission"), "{e}");
    }
}
