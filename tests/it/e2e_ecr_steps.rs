//! One AWS identity per job: a push with `--role-arn` through the ECR API that also creates
//! the repository (`--create-repository`) and starts a scan (`--scan`) assumes the role once,
//! not once per ECR step; real `ocipush` binary, real moto (IAM enforced, STS and ECR calls
//! observed per identity by `tests/support/moto_ecr.py`). And the library side: the ECR token
//! provider from `EcrSettings::credential_provider` shares the settings' SDK configuration, so a
//! token and a repository step assume the role once between them.

use ocipush::auth::{CredentialProvider, RegistryHost};
use ocipush::ecr::AwsOptions;
use ocipush::pipeline::ecr::EcrSettings;
use ocipush::reference::Reference;
use serde::{Deserialize, Serialize};

use crate::common::fixtures::alpine_base_registry;
use crate::common::ocipush::{Sandbox, assert_pushed};
use crate::common::testdata;
use crate::e2e_ecr::ecr_support::{Call, ECR_CONTAINERISE, Moto, run_child, scenario};

fn calls(moto: &Moto) -> Vec<Call> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(moto.calls_with_status())
}

/// How many `action`s moto served `caller` successfully.
fn served(calls: &[Call], action: &str, caller: &str) -> usize {
    calls
        .iter()
        .filter(|c| c.action == action && c.caller == caller && c.status == Some(200))
        .count()
}

#[test]
fn a_role_is_assumed_once_for_every_ecr_step_of_a_push() {
    let moto = Moto::start(ECR_CONTAINERISE);
    let sb = Sandbox::new();
    let _alpine = alpine_base_registry(&sb);
    let repo = format!("{}/created-by-push", moto.info.host());
    let dockerfile = testdata("hello/Dockerfile");
    let registries_conf = sb.registries_conf();
    let destination = format!("{repo}:v1");
    let args: [&std::ffi::OsStr; 12] = [
        "--registries-conf".as_ref(),
        registries_conf.as_os_str(),
        "--ecr-api".as_ref(),
        "--role-arn".as_ref(),
        moto.info.role_arn.as_ref(),
        "--external-id".as_ref(),
        moto.info.external_id.as_ref(),
        "--create-repository".as_ref(),
        "--scan".as_ref(),
        "-q".as_ref(),
        dockerfile.as_os_str(),
        destination.as_ref(),
    ];
    let out = sb.ocipush_env(
        args,
        &[
            ("AWS_ACCESS_KEY_ID", &moto.info.builder.key),
            ("AWS_SECRET_ACCESS_KEY", &moto.info.builder.secret),
            ("AWS_ENDPOINT_URL", &moto.info.moto),
        ],
    );
    assert_pushed(&out, &repo);

    let calls = calls(&moto);
    // Every step ran, as the role.
    for action in ["ecr:CreateRepository", "ecr:PutImage", "ecr:StartImageScan"] {
        assert_eq!(
            served(&calls, action, "assumed-role"),
            1,
            "{action}: {calls:#?}"
        );
    }
    // And the role was assumed once for all of them.
    assert_assumed_once(&calls);
    assert_eq!(served(&calls, "sts:AssumeRole", "builder"), 1, "{calls:#?}");
}

/// What the child below does: as `builder` assuming `role_arn`, get a token for `host` and
/// create `repository` there, both from one `EcrSettings`.
#[derive(Debug, Serialize, Deserialize)]
struct SharedConfig {
    host: String,
    repository: String,
    role_arn: String,
    external_id: String,
}

#[test]
fn the_token_provider_shares_the_settings_sdk_configuration() {
    let moto = Moto::start(ECR_CONTAINERISE);
    let s = SharedConfig {
        host: moto.info.host(),
        repository: "shared-config".into(),
        role_arn: moto.info.role_arn.clone(),
        external_id: moto.info.external_id.clone(),
    };
    run_child(
        "e2e_ecr_steps::child_token_and_repository_step",
        &s,
        &[
            ("AWS_ACCESS_KEY_ID", &moto.info.builder.key),
            ("AWS_SECRET_ACCESS_KEY", &moto.info.builder.secret),
            ("AWS_ENDPOINT_URL", &moto.info.moto),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    let calls = calls(&moto);
    for action in ["ecr:GetAuthorizationToken", "ecr:CreateRepository"] {
        assert_eq!(
            served(&calls, action, "assumed-role"),
            1,
            "{action}: {calls:#?}"
        );
    }
    assert_assumed_once(&calls);
}

/// `sts:AssumeRole` was called exactly once.
fn assert_assumed_once(calls: &[Call]) {
    let assumed = calls
        .iter()
        .filter(|c| c.action == "sts:AssumeRole")
        .count();
    assert_eq!(assumed, 1, "{calls:#?}");
}

#[test]
#[ignore = "a child process of the_token_provider_shares_the_settings_sdk_configuration"]
fn child_token_and_repository_step() {
    let Some(s) = scenario::<SharedConfig>() else {
        return;
    };
    let settings = EcrSettings {
        aws: AwsOptions {
            role_arn: Some(s.role_arn),
            external_id: Some(s.external_id),
            ..Default::default()
        },
        create_repository: Some(Default::default()),
        ..Default::default()
    };
    let provider = settings.credential_provider();
    let reference = Reference::parse(&format!("{}/{}:v1", s.host, s.repository)).unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let host = RegistryHost {
            logical: &s.host,
            endpoint: &s.host,
        };
        let token = provider.credentials(&host).await.unwrap();
        assert!(token.is_some(), "no token for {}", s.host);
        settings.before_push(&reference).await.unwrap();
    });
}
