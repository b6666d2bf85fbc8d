//! `ocipush iam-policy`: the IAM identity policy a push needs and nothing more, plus what each
//! option adds, and the trust policy of the role (EC2, another account with an external id,
//! GitHub Actions OIDC). Output is pretty JSON, deterministic (statements and actions in a fixed order).
//!
//! Each option adds exactly the actions of the calls it makes, as the Service Authorization
//! Reference lists them
//! (<https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticcontainerregistry.html>):
//! `--create-repository` calls only `CreateRepository`, which carries the tag mutability and
//! scan-on-push settings as its own parameters
//! (<https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreateRepository.html>), so
//! neither `ecr:PutImageTagMutability` nor `ecr:PutImageScanningConfiguration` is needed; `--scan`
//! calls `StartImageScan`; a base image read from ECR needs `BatchGetImage` and
//! `GetDownloadUrlForLayer`, and from a pull-through-cache repository also
//! `BatchImportUpstreamImage` (and `CreateRepository` for the cache's first pull)
//! (<https://docs.aws.amazon.com/AmazonECR/latest/userguide/pull-through-cache-iam.html>).
//!
//! For Amazon ECR Public (`public.ecr.aws/<alias>/<repository>`) the same push is made of the
//! `ecr-public:` actions (Service Authorization Reference, "Amazon Elastic Container Registry
//! Public":
//! <https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticcontainerregistrypublic.html>),
//! and its token needs `ecr-public:GetAuthorizationToken` and `sts:GetServiceBearerToken`, both
//! on `*` (<https://docs.aws.amazon.com/AmazonECR/latest/public/public-repository-policy-examples.html>).
//! Its repository ARN, `arn:aws:ecr-public::<account>:repository/<name>`, has no region, and the
//! account is not in the reference (the alias names the registry): it comes from `--account`,
//! else `*`. ECR Public has no scanning and ocipush does not create its repositories, so
//! `--scan` and `--create-repository` are refused for it.

use std::str::FromStr;

use serde_json::{Value, json};

use crate::ecr_host::{EcrHost, EcrHostError, EcrPublicRepository, EcrRepository};

/// The actions on the repository every push needs.
pub const PUSH_ACTIONS: &[&str] = &[
    "ecr:BatchCheckLayerAvailability",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
];

/// The actions on an Amazon ECR Public repository every push to it needs.
pub const PUBLIC_PUSH_ACTIONS: &[&str] = &[
    "ecr-public:BatchCheckLayerAvailability",
    "ecr-public:InitiateLayerUpload",
    "ecr-public:UploadLayerPart",
    "ecr-public:CompleteLayerUpload",
    "ecr-public:PutImage",
];

/// The actions (on `*`) an Amazon ECR Public token needs.
pub const PUBLIC_TOKEN_ACTIONS: &[&str] = &[
    "ecr-public:GetAuthorizationToken",
    "sts:GetServiceBearerToken",
];

/// The actions on a source repository that pulling a base image from ECR needs.
pub const PULL_ACTIONS: &[&str] = &["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"];

/// The actions on a pull-through-cache repository that pulling a base image through it needs:
/// the pull actions, the import from the upstream registry, and the creation of the cache
/// repository on its first pull.
pub const PULL_THROUGH_CACHE_ACTIONS: &[&str] = &[
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchImportUpstreamImage",
    "ecr:CreateRepository",
];

/// Why a policy could not be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The repository is not an ECR repository.
    #[error("cannot write an IAM policy: {0}")]
    Repository(#[from] EcrHostError),
    /// A `--trust` value was not understood.
    #[error(
        "--trust {given:?} is not understood: {why}; use `ec2`, `account:<12-digit id>[:<external id>]` \
         or `github:<owner>/<repo>`"
    )]
    Trust {
        /// What was given.
        given: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// An option that does not apply to this repository.
    #[error("{option} {why}")]
    Option {
        /// The option.
        option: &'static str,
        /// Why not, and what to do.
        why: String,
    },
}

/// Options of the push that need more than the push actions. (The tag mutability and
/// scan-on-push settings of `--create-repository` need nothing more: `CreateRepository` carries them.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyOptions {
    /// `--create-repository`: `ecr:CreateRepository`.
    pub create_repository: bool,
    /// `--scan`: `ecr:StartImageScan`.
    pub scan: bool,
    /// Base images pulled from ECR repositories: [`PULL_ACTIONS`] on each.
    pub base_images: Vec<EcrRepository>,
    /// Base images pulled through ECR pull-through-cache repositories:
    /// [`PULL_THROUGH_CACHE_ACTIONS`] on each.
    pub pull_through_bases: Vec<EcrRepository>,
    /// `--account`: the 12-digit account that owns an Amazon ECR Public registry (its repository
    /// ARN needs it; the reference names only the alias). Only for ECR Public.
    pub account: Option<String>,
}

/// Who may assume the role (`--trust`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The EC2 service (an instance profile).
    Ec2,
    /// Principals of another account, optionally requiring an external id.
    Account {
        /// The 12-digit account id.
        account: String,
        /// The `sts:ExternalId` required.
        external_id: Option<String>,
    },
    /// GitHub Actions workflows of one repository, through the GitHub OIDC provider.
    GitHub {
        /// `owner/repo`.
        repository: String,
    },
}

impl FromStr for Trust {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        let bad = |why| PolicyError::Trust {
            given: s.to_string(),
            why,
        };
        if s == "ec2" {
            return Ok(Trust::Ec2);
        }
        if let Some(rest) = s.strip_prefix("account:") {
            let (account, external_id) = match rest.split_once(':') {
                Some((a, e)) if !e.is_empty() => (a, Some(e.to_string())),
                Some(_) => return Err(bad("the external id is empty")),
                None => (rest, None),
            };
            if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("the account id must be 12 digits"));
            }
            return Ok(Trust::Account {
                account: account.to_string(),
                external_id,
            });
        }
        if let Some(rest) = s.strip_prefix("github:") {
            let valid = |p: &str| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            };
            return match rest.split_once('/') {
                Some((o, r)) if valid(o) && valid(r) => Ok(Trust::GitHub {
                    repository: rest.to_string(),
                }),
                _ => Err(bad("expected github:<owner>/<repo>")),
            };
        }
        Err(bad("unknown kind"))
    }
}

fn statement(sid: &str, actions: &[&str], resource: &str) -> Value {
    let action = match actions {
        [one] => json!(one),
        many => json!(many),
    };
    json!({ "Sid": sid, "Effect": "Allow", "Action": action, "Resource": resource })
}

/// A statement id from a repository name (`Sid` allows only alphanumerics).
fn sid_for(prefix: &str, name: &str) -> String {
    let mut s = prefix.to_string();
    let mut upper = true;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(if upper { c.to_ascii_uppercase() } else { c });
            upper = false;
        } else {
            upper = true;
        }
    }
    s
}

/// The identity policy for pushing to `repository` with `options`.
pub fn identity_policy(repository: &EcrRepository, options: &PolicyOptions) -> Value {
    let arn = repository.arn();
    let mut statements = vec![statement(
        "GetAuthorizationToken",
        &["ecr:GetAuthorizationToken"],
        "*",
    )];
    let mut push: Vec<&str> = PUSH_ACTIONS.to_vec();
    if options.scan {
        push.push("ecr:StartImageScan");
    }
    statements.push(statement("PushImage", &push, &arn));
    if options.create_repository {
        statements.push(statement(
            "CreateRepository",
            &["ecr:CreateRepository"],
            &arn,
        ));
    }
    statements.extend(base_statements(options));
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// The statements for the base images of `options` (each repository once; one named both
/// ways gets the pull-through-cache statement, a superset).
fn base_statements(options: &PolicyOptions) -> Vec<Value> {
    let mut statements = vec![];
    let mut seen = Vec::new();
    let bases = options
        .pull_through_bases
        .iter()
        .map(|b| (b, "PullThroughCacheBase", PULL_THROUGH_CACHE_ACTIONS))
        .chain(
            options
                .base_images
                .iter()
                .map(|b| (b, "PullBase", PULL_ACTIONS)),
        );
    for (base, prefix, actions) in bases {
        let base_arn = base.arn();
        if seen.contains(&base_arn) {
            continue;
        }
        statements.push(statement(&sid_for(prefix, &base.name), actions, &base_arn));
        seen.push(base_arn);
    }
    statements
}

/// The identity policy for pushing to the Amazon ECR Public `repository` with `options`: the
/// token's two actions on `*`, the push actions on the repository ARN (account from
/// `options.account`, else `*`), and the base images' statements. `--scan` and
/// `--create-repository` are refused (see the module documentation).
pub fn public_identity_policy(
    repository: &EcrPublicRepository,
    options: &PolicyOptions,
) -> Result<Value, PolicyError> {
    if options.scan {
        return Err(PolicyError::Option {
            option: "--scan",
            why: "does not apply to Amazon ECR Public, which has no image scanning".into(),
        });
    }
    if options.create_repository {
        return Err(PolicyError::Option {
            option: "--create-repository",
            why: format!(
                "does not apply to Amazon ECR Public: ocipush does not create its repositories (create it \
                 with `aws ecr-public create-repository --repository-name {} --region us-east-1`)",
                repository.name
            ),
        });
    }
    let arn = repository.arn(options.account.as_deref());
    let mut statements = vec![
        statement("GetAuthorizationToken", PUBLIC_TOKEN_ACTIONS, "*"),
        statement("PushImage", PUBLIC_PUSH_ACTIONS, &arn),
    ];
    statements.extend(base_statements(options));
    Ok(json!({ "Version": "2012-10-17", "Statement": statements }))
}

/// The trust policy of the role, for `trust`; `host` gives the partition and the account that owns
/// the GitHub OIDC provider.
pub fn trust_policy(trust: &Trust, host: &EcrHost) -> Value {
    trust_policy_in(trust, host.partition, &host.account)
}

/// [`trust_policy`] in `partition`, with the GitHub OIDC provider in `account`.
fn trust_policy_in(trust: &Trust, p: &str, oidc_account: &str) -> Value {
    let statement = match trust {
        Trust::Ec2 => {
            let service = if p == "aws-cn" {
                "ec2.amazonaws.com.cn"
            } else {
                "ec2.amazonaws.com"
            };
            json!({ "Effect": "Allow", "Principal": { "Service": service }, "Action": "sts:AssumeRole" })
        }
        Trust::Account {
            account,
            external_id,
        } => {
            let mut s = json!({
                "Effect": "Allow",
                "Principal": { "AWS": format!("arn:{p}:iam::{account}:root") },
                "Action": "sts:AssumeRole",
            });
            if let Some(id) = external_id {
                s["Condition"] = json!({ "StringEquals": { "sts:ExternalId": id } });
            }
            s
        }
        Trust::GitHub { repository } => json!({
            "Effect": "Allow",
            "Principal": {
                "Federated": format!("arn:{p}:iam::{oidc_account}:oidc-provider/token.actions.githubusercontent.com")
            },
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": { "token.actions.githubusercontent.com:aud": "sts.amazonaws.com" },
                "StringLike": { "token.actions.githubusercontent.com:sub": format!("repo:{repository}:*") }
            }
        }),
    };
    json!({ "Version": "2012-10-17", "Statement": [statement] })
}

/// Pretty JSON with a trailing newline.
pub fn to_pretty_json(policy: &Value) -> String {
    let mut s = serde_json::to_string_pretty(policy).unwrap_or_default();
    s.push('\n');
    s
}

/// `ocipush iam-policy <repository>`: the identity policy as pretty JSON (for an ECR or an
/// Amazon ECR Public repository).
pub fn render_identity_policy(
    repository: &str,
    options: &PolicyOptions,
) -> Result<String, PolicyError> {
    if let Some(public) = public_repository(repository)? {
        check_account(options.account.as_deref())?;
        return Ok(to_pretty_json(&public_identity_policy(&public, options)?));
    }
    let repo = EcrRepository::parse(repository)?;
    if options.account.is_some() {
        return Err(PolicyError::Option {
            option: "--account",
            why: format!(
                "is for Amazon ECR Public only: {} names its account itself",
                repo.host
            ),
        });
    }
    Ok(to_pretty_json(&identity_policy(&repo, options)))
}

/// `ocipush iam-policy <repository> --trust <trust>`: the trust policy as pretty JSON. For ECR
/// Public, `account` is the account of the GitHub OIDC provider (needed for `github:` only).
pub fn render_trust_policy(
    repository: &str,
    trust: &str,
    account: Option<&str>,
) -> Result<String, PolicyError> {
    let trust: Trust = trust.parse()?;
    if public_repository(repository)?.is_some() {
        check_account(account)?;
        let oidc_account = match (&trust, account) {
            (_, Some(a)) => a,
            (Trust::GitHub { .. }, None) => {
                return Err(PolicyError::Option {
                    option: "--trust github:…",
                    why: "needs --account for Amazon ECR Public: the GitHub OIDC provider is in the \
                          account that owns the registry, which public.ecr.aws/<alias> does not name"
                        .into(),
                });
            }
            (_, None) => "",
        };
        return Ok(to_pretty_json(&trust_policy_in(
            &trust,
            "aws",
            oidc_account,
        )));
    }
    let repo = EcrRepository::parse(repository)?;
    Ok(to_pretty_json(&trust_policy(&trust, &repo.host)))
}

/// The ECR Public repository `reference` names, `None` for another host.
fn public_repository(reference: &str) -> Result<Option<EcrPublicRepository>, PolicyError> {
    let host = reference.split('/').next().unwrap_or_default();
    if !EcrPublicRepository::is_public_host(host) {
        return Ok(None);
    }
    Ok(Some(EcrPublicRepository::parse(reference)?))
}

/// `--account` must be a 12-digit account id.
fn check_account(account: Option<&str>) -> Result<(), PolicyError> {
    match account {
        Some(a) if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) => {
            Err(PolicyError::Option {
                option: "--account",
                why: format!("{a:?} is not a 12-digit AWS account id"),
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPO: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ec2-ecr-test";

    #[test]
    fn push_only() {
        insta::assert_snapshot!(render_identity_policy(REPO, &PolicyOptions::default()).unwrap());
    }

    #[test]
    fn with_every_option() {
        let options = PolicyOptions {
            create_repository: true,
            scan: true,
            base_images: vec![
                EcrRepository::parse("210987654321.dkr.ecr.eu-west-1.amazonaws.com/base/alpine")
                    .unwrap(),
                EcrRepository::parse("210987654321.dkr.ecr.eu-west-1.amazonaws.com/base/alpine:3")
                    .unwrap(),
            ],
            pull_through_bases: vec![
                EcrRepository::parse(
                    "123456789012.dkr.ecr.us-east-1.amazonaws.com/docker-hub/library/alpine:3",
                )
                .unwrap(),
            ],
            account: None,
        };
        insta::assert_snapshot!(render_identity_policy(REPO, &options).unwrap());
    }

    #[test]
    fn create_only_adds_create() {
        let options = PolicyOptions {
            create_repository: true,
            ..Default::default()
        };
        let p = identity_policy(&EcrRepository::parse(REPO).unwrap(), &options);
        let text = p.to_string();
        assert!(text.contains("ecr:CreateRepository"));
        assert!(!text.contains("PutImageTagMutability") && !text.contains("BatchGetImage"));
    }

    #[test]
    fn create_needs_no_put_settings_actions() {
        // CreateRepository carries imageTagMutability and imageScanningConfiguration itself.
        let options = PolicyOptions {
            create_repository: true,
            ..Default::default()
        };
        let text = identity_policy(&EcrRepository::parse(REPO).unwrap(), &options).to_string();
        assert!(!text.contains("PutImageTagMutability"), "{text}");
        assert!(!text.contains("PutImageScanningConfiguration"), "{text}");
    }

    #[test]
    fn pull_through_cache_bases_may_import() {
        let base = EcrRepository::parse(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/ecr-public/docker/library/alpine",
        )
        .unwrap();
        let options = PolicyOptions {
            pull_through_bases: vec![base.clone()],
            base_images: vec![base],
            ..Default::default()
        };
        let p = identity_policy(&EcrRepository::parse(REPO).unwrap(), &options);
        let statements = p["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 3, "{p:#}");
        assert_eq!(
            statements[2]["Action"],
            json!(PULL_THROUGH_CACHE_ACTIONS),
            "{p:#}"
        );
        assert_eq!(
            statements[2]["Resource"],
            "arn:aws:ecr:us-east-1:123456789012:repository/ecr-public/docker/library/alpine"
        );
    }

    #[test]
    fn new_hosts_and_partitions() {
        for (repo, arn) in [
            (
                "123456789012.dkr-ecr.us-east-1.on.aws/app",
                "arn:aws:ecr:us-east-1:123456789012:repository/app",
            ),
            (
                "123456789012.dkr-ecr-fips.us-gov-east-1.on.aws/app",
                "arn:aws-us-gov:ecr:us-gov-east-1:123456789012:repository/app",
            ),
            (
                "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu/app",
                "arn:aws-eusc:ecr:eusc-de-east-1:123456789012:repository/app",
            ),
        ] {
            let s = render_identity_policy(repo, &PolicyOptions::default()).unwrap();
            assert!(s.contains(arn), "{repo}: {s}");
        }
        let e =
            render_identity_policy("public.ecr.aws/alias", &PolicyOptions::default()).unwrap_err();
        assert!(e.to_string().contains("Amazon ECR Public"), "{e}");
    }

    #[test]
    fn china_partition() {
        let s = render_identity_policy(
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app",
            &PolicyOptions::default(),
        )
        .unwrap();
        assert!(
            s.contains("arn:aws-cn:ecr:cn-north-1:123456789012:repository/app"),
            "{s}"
        );
    }

    #[test]
    fn trust_ec2() {
        insta::assert_snapshot!(render_trust_policy(REPO, "ec2", None).unwrap());
    }

    #[test]
    fn trust_account_with_external_id() {
        insta::assert_snapshot!(
            render_trust_policy(REPO, "account:210987654321:vendor-7f3a", None).unwrap()
        );
    }

    #[test]
    fn trust_github() {
        insta::assert_snapshot!(render_trust_policy(REPO, "github:octo-org/app", None).unwrap());
    }

    #[test]
    fn bad_trust() {
        for t in [
            "ec3",
            "account:123",
            "account:123456789012:",
            "github:nope",
            "github:/x",
        ] {
            assert!(render_trust_policy(REPO, t, None).is_err(), "{t}");
        }
        assert!(
            render_identity_policy("docker.io/library/alpine", &PolicyOptions::default()).is_err()
        );
    }

    const PUBLIC: &str = "public.ecr.aws/a1b2c3d4/ec2-ecr-test";

    #[test]
    fn public_push_only() {
        insta::assert_snapshot!(render_identity_policy(PUBLIC, &PolicyOptions::default()).unwrap());
    }

    #[test]
    fn public_with_account_and_base() {
        let options = PolicyOptions {
            account: Some("123456789012".into()),
            base_images: vec![
                EcrRepository::parse("210987654321.dkr.ecr.eu-west-1.amazonaws.com/base/alpine")
                    .unwrap(),
            ],
            ..Default::default()
        };
        insta::assert_snapshot!(render_identity_policy(PUBLIC, &options).unwrap());
    }

    #[test]
    fn public_refuses_what_it_cannot_do() {
        for (options, flag) in [
            (
                PolicyOptions {
                    scan: true,
                    ..Default::default()
                },
                "--scan",
            ),
            (
                PolicyOptions {
                    create_repository: true,
                    ..Default::default()
                },
                "--create-repository",
            ),
            (
                PolicyOptions {
                    account: Some("1234".into()),
                    ..Default::default()
                },
                "--account",
            ),
        ] {
            let e = render_identity_policy(PUBLIC, &options).unwrap_err();
            assert!(e.to_string().starts_with(flag), "{e}");
        }
        // --account is for ECR Public only.
        let e = render_identity_policy(
            REPO,
            &PolicyOptions {
                account: Some("123456789012".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("ECR Public only"), "{e}");
        // GitHub's OIDC provider needs the account.
        assert!(render_trust_policy(PUBLIC, "github:octo-org/app", None).is_err());
        let t = render_trust_policy(PUBLIC, "github:octo-org/app", Some("123456789012")).unwrap();
        assert!(
            t.contains(
                "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
            ),
            "{t}"
        );
        assert!(
            render_trust_policy(PUBLIC, "ec2", None)
                .unwrap()
                .contains("ec2.amazonaws.com")
        );
    }
}
