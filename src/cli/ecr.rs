//! The Amazon ECR parts of the command line: `ocipush iam-policy`, and the push flags turned
//! into library settings.

use ocipush::ecr::policy::{PolicyOptions, render_identity_policy, render_trust_policy};
use ocipush::ecr::repo_admin::CreateRepositoryOptions;
use ocipush::ecr::{AwsOptions, EcrPublicRepository, EcrRepository};
use ocipush::pipeline::Target;
use ocipush::pipeline::ecr::EcrSettings;

use super::Failure;
use super::args::{EcrArgs, IamPolicyArgs, ReliabilityArgs};

/// The library settings for the ECR flags of a push to `target`.
pub fn settings(a: &EcrArgs, r: &ReliabilityArgs, target: &Target) -> EcrSettings {
    EcrSettings {
        aws: AwsOptions {
            profile: a.profile.clone(),
            role_arn: a.role_arn.clone(),
            external_id: a.external_id.clone(),
            role_session_name: a.role_session_name.clone(),
            role_duration: a.role_duration.map(std::time::Duration::from_secs),
            // --retries / --timeout apply to the AWS calls too (the ECR API transport, tokens).
            ..super::reliability::aws_options(r)
        },
        api: a.ecr_api,
        create_repository: a.create_repository.then(|| CreateRepositoryOptions {
            immutable_tags: a.image_tag_mutability.as_deref().map(|m| m == "IMMUTABLE"),
            scan_on_push: a.scan_on_push.then_some(true),
        }),
        scan: a.scan,
        public_tokens: EcrSettings::public_tokens_for(target),
        ..EcrSettings::default()
    }
}

/// `ocipush iam-policy`: the identity policy on stdout; with `--trust`, the trust policy after it.
pub fn iam_policy(a: &IamPolicyArgs) -> Result<(), Failure> {
    let parse = |flag: &str, list: &[String]| -> Result<Vec<EcrRepository>, Failure> {
        list.iter()
            .map(|b| {
                EcrRepository::parse(b)
                    .map_err(|e| Failure::usage(format!("invalid {flag} {b:?}: {e}")))
            })
            .collect()
    };
    // --image-tag-mutability / --scan-on-push add nothing: CreateRepository carries them.
    let options = PolicyOptions {
        create_repository: a.create_repository,
        scan: a.scan,
        base_images: parse("--base", &a.base_images)?,
        pull_through_bases: parse("--pull-through-base", &a.pull_through_bases)?,
        account: a.account.clone(),
    };
    let identity = render_identity_policy(&a.repository, &options)
        .map_err(|e| Failure::usage(e.to_string()))?;
    print!("{identity}");
    let host = a.repository.split('/').next().unwrap_or_default();
    if a.account.is_none() && EcrPublicRepository::is_public_host(host) {
        eprintln!(
            "(the repository ARN has `*` for the account: public.ecr.aws/<alias> does not name it; \
             pass --account <12-digit id> of the account that owns the alias to narrow it)"
        );
    }
    if let Some(trust) = &a.trust {
        let trust = render_trust_policy(&a.repository, trust, a.account.as_deref())
            .map_err(|e| Failure::usage(e.to_string()))?;
        eprintln!(
            "(the identity policy above goes on the role; the trust policy below says who may assume it)"
        );
        print!("{trust}");
    }
    Ok(())
}
