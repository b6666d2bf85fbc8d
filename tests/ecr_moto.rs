//! ECR against moto under IAM enforcement: the reference scenario (credentials from a real
//! IMDSv2 protocol stand-in read by aws-config's own IMDS provider, no keys, no ~/.aws, no region),
//! missing permissions named in errors, the generated policy being enough, AssumeRole from a user's
//! keys, no credentials at all, and no secret in any error.
//!
//! Each scenario runs in a child process of this test binary with its own environment
//! (see `ecr_support::run_child`); the parent starts moto and verifies with an admin identity.

mod ecr_support;

use ecr_support::*;
use ocipush::auth::{Credential, CredentialProvider, RegistryHost};
use ocipush::blob::{BlobSource, BytesBlob, FileBlob};
use ocipush::dest::Destination;
use ocipush::digest::Digest;
use ocipush::ecr::{
    AwsOptions, EcrApiDestination, EcrCredentialProvider, EcrError, load_sdk_config,
};
use ocipush::image::media_types;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Scenario {
    reference: String,
    account: String,
    region: String,
    tag: String,
    role_arn: Option<String>,
    external_id: Option<String>,
    session_name: Option<String>,
    profile: Option<String>,
    /// Written to `$HOME/.aws/config` by the child before anything else.
    aws_config_file: Option<String>,
    /// Written to `$HOME/.aws/credentials` by the child before anything else.
    aws_credentials_file: Option<String>,
}

impl Scenario {
    fn for_moto(moto: &Moto) -> Scenario {
        Scenario {
            reference: moto.info.reference(),
            account: moto.info.account.clone(),
            region: moto.info.region.clone(),
            tag: "v1".into(),
            ..Default::default()
        }
    }
    fn options(&self) -> AwsOptions {
        AwsOptions {
            role_arn: self.role_arn.clone(),
            external_id: self.external_id.clone(),
            role_session_name: self.session_name.clone(),
            profile: self.profile.clone(),
            ..Default::default()
        }
    }
}

/// What the child reports on its last stdout line.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Report {
    pushed: bool,
    /// The step that failed.
    failed_step: Option<String>,
    /// The error's Display.
    error: Option<String>,
    /// The missing IAM action the error names.
    missing_action: Option<String>,
    /// How many secrets were checked against every error text.
    secrets_checked: usize,
}

fn report(out: &std::process::Output) -> Report {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no RESULT in {stdout}"));
    serde_json::from_str(line).unwrap()
}

fn imds_env(moto: &Moto) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", moto.info.imds.clone()),
        ("AWS_ENDPOINT_URL", moto.info.moto.clone()),
    ]
}

fn run(name: &str, s: &Scenario, env: &[(&'static str, String)]) -> Report {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    report(&run_child(name, s, &env))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every blob of the test image is in the repository; the tag is there (or not).
async fn verify(moto: &Moto, tag: &str, tag_expected: bool) {
    let ecr = moto.admin_ecr();
    let img = test_image();
    let digests: Vec<String> = img
        .layers
        .iter()
        .chain([&img.config])
        .map(|b| b.descriptor.digest.to_string())
        .collect();
    let avail = ecr
        .batch_check_layer_availability()
        .repository_name(&moto.info.repository)
        .set_layer_digests(Some(digests.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(avail.layers().len(), digests.len(), "{avail:?}");
    let got = ecr
        .batch_get_image()
        .repository_name(&moto.info.repository)
        .image_ids(
            aws_sdk_ecr::types::ImageIdentifier::builder()
                .image_tag(tag)
                .build(),
        )
        .send()
        .await
        .unwrap();
    if tag_expected {
        assert_eq!(got.images().len(), 1, "{got:?}");
        let manifest = got.images()[0].image_manifest().unwrap();
        assert_eq!(manifest.as_bytes(), &img.manifest[..]);
    } else {
        assert!(
            got.images().is_empty(),
            "tag {tag} should not exist: {got:?}"
        );
    }
}

/// The pushing identity never read the target, sent well-formed layer parts (the 11 MiB layer
/// in more than one), and fetched the token once per invalidation.
async fn check_calls(moto: &Moto, pusher: &str) {
    let parts = assert_parts_valid(&moto.calls_with_status().await);
    assert!(
        parts.iter().any(|&n| n > 1),
        "no upload in more than one part: {parts:?}"
    );
    let calls = moto.calls().await;
    for (action, caller) in &calls {
        if caller == pusher {
            assert!(
                action != "ecr:BatchGetImage" && action != "ecr:GetDownloadUrlForLayer",
                "the push read the target: {calls:?}"
            );
        }
    }
    let tokens = calls
        .iter()
        .filter(|(a, c)| a == "ecr:GetAuthorizationToken" && c == pusher)
        .count();
    assert_eq!(
        tokens, 2,
        "one fetch, cached, one after invalidate: {calls:?}"
    );
}

#[test]
fn reference_push_with_imds_credentials() {
    let moto = Moto::start(ECR_CONTAINERISE);
    let r = run("child_push", &Scenario::for_moto(&moto), &imds_env(&moto));
    assert!(r.pushed, "{r:?}");
    assert!(r.secrets_checked >= 4, "{r:?}");
    rt().block_on(async {
        verify(&moto, "v1", true).await;
        check_calls(&moto, "assumed-role").await;
    });
}

#[test]
fn generated_policy_is_enough() {
    let reference = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ec2-ecr-test";
    let policy =
        ocipush::ecr::policy::render_identity_policy(reference, &Default::default()).unwrap();
    let moto = Moto::start(&policy);
    let r = run("child_push", &Scenario::for_moto(&moto), &imds_env(&moto));
    assert!(r.pushed, "{r:?}");
    rt().block_on(verify(&moto, "v1", true));
}

fn denied(action: &str, step: &str) -> (Moto, Report) {
    let moto = Moto::start(&containerise_without(action));
    let r = run("child_push", &Scenario::for_moto(&moto), &imds_env(&moto));
    assert!(!r.pushed, "{r:?}");
    assert_eq!(r.failed_step.as_deref(), Some(step), "{r:?}");
    assert_eq!(r.missing_action.as_deref(), Some(action), "{r:?}");
    let e = r.error.as_deref().unwrap();
    eprintln!("{step} without {action}: {e}");
    assert!(e.contains(&format!("`{action}`")), "{e}");
    assert!(e.contains("ocipush iam-policy"), "{e}");
    (moto, r)
}

#[test]
fn missing_put_image_is_named_and_no_tag_appears() {
    let (moto, r) = denied("ecr:PutImage", "put_manifest");
    let e = r.error.unwrap();
    assert!(
        e.contains("arn:aws:ecr:us-east-1:123456789012:repository/ec2-ecr-test"),
        "{e}"
    );
    rt().block_on(verify(&moto, "v1", false));
}

#[test]
fn missing_upload_layer_part_is_named() {
    let (moto, _) = denied("ecr:UploadLayerPart", "put_blob");
    drop(moto);
}

#[test]
fn missing_batch_check_is_named() {
    denied("ecr:BatchCheckLayerAvailability", "blobs_exist");
}

#[test]
fn missing_get_authorization_token_is_named() {
    let (_moto, r) = denied("ecr:GetAuthorizationToken", "token");
    assert!(r.error.unwrap().contains("on `*`"));
}

#[test]
fn assume_role_from_user_keys_with_external_id() {
    let moto = Moto::start(ECR_CONTAINERISE);
    let mut s = Scenario::for_moto(&moto);
    s.role_arn = Some(moto.info.role_arn.clone());
    s.external_id = Some(moto.info.external_id.clone());
    s.session_name = Some("vendor-push".into());
    let env = vec![
        ("AWS_ACCESS_KEY_ID", moto.info.builder.key.clone()),
        ("AWS_SECRET_ACCESS_KEY", moto.info.builder.secret.clone()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        // A configured region other than the registry's: ECR calls still go to the host's region
        // (the repository exists only in us-east-1 in moto).
        ("AWS_REGION", "eu-west-1".into()),
        // The per-service overrides, read by aws-config itself.
        ("AWS_ENDPOINT_URL_ECR", moto.info.moto.clone()),
        ("AWS_ENDPOINT_URL_STS", moto.info.moto.clone()),
    ];
    // The trust policy requires the external id: a wrong one is refused (the id is sent).
    let mut wrong = s.clone();
    wrong.external_id = Some("not-the-vendor-id".into());
    let r = run("child_push", &wrong, &env);
    assert_eq!(r.failed_step.as_deref(), Some("token"), "{r:?}");
    let r = run("child_push", &s, &env);
    assert!(r.pushed, "{r:?}");
    rt().block_on(async {
        verify(&moto, "v1", true).await;
        check_calls(&moto, "assumed-role").await;
        let calls = moto.calls().await;
        assert!(
            calls
                .iter()
                .all(|(a, c)| !a.starts_with("ecr:") || c != "builder"),
            "ECR was called with the user's own keys: {calls:?}"
        );
        assert!(
            calls
                .iter()
                .any(|(a, c)| a == "sts:AssumeRole" && c == "builder"),
            "the role was not assumed with the user's keys: {calls:?}"
        );
    });
}

#[test]
fn profile_with_role_arn_and_source_profile() {
    let moto = Moto::start(ECR_CONTAINERISE);
    let mut s = Scenario::for_moto(&moto);
    s.profile = Some("push".into());
    s.aws_credentials_file = Some(format!(
        "[vendor]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        moto.info.builder.key, moto.info.builder.secret
    ));
    // No region anywhere: the ECR host's is used.
    s.aws_config_file = Some(format!(
        "[profile push]\nrole_arn = {}\nsource_profile = vendor\nrole_session_name = from-profile\n\
         external_id = {}\n",
        moto.info.role_arn, moto.info.external_id
    ));
    let env = vec![
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ("AWS_ENDPOINT_URL", moto.info.moto.clone()),
    ];
    let r = run("child_push", &s, &env);
    assert!(r.pushed, "{r:?}");
    rt().block_on(async {
        verify(&moto, "v1", true).await;
        check_calls(&moto, "assumed-role").await;
    });
}

#[test]
fn no_credentials_says_what_was_tried() {
    let s = Scenario {
        reference: "123456789012.dkr.ecr.us-east-1.amazonaws.com/ec2-ecr-test".into(),
        account: "123456789012".into(),
        region: "us-east-1".into(),
        tag: "v1".into(),
        ..Default::default()
    };
    let env = vec![
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9".into()),
    ];
    let r = run("child_push", &s, &env);
    assert_eq!(r.failed_step.as_deref(), Some("token"), "{r:?}");
    let e = r.error.unwrap();
    eprintln!("{e}");
    assert!(e.contains("no AWS credentials"), "{e}");
    assert!(
        e.contains("EC2 instance metadata") && e.contains("AWS_ACCESS_KEY_ID"),
        "{e}"
    );
}

// ------------------------------------------------------------------ the child

#[test]
#[ignore = "a child process of the scenarios above; does nothing on its own"]
fn child_push() {
    let Some(s) = scenario::<Scenario>() else {
        return;
    };
    // This child's own HOME (an empty temporary directory made by the parent).
    let aws = std::path::Path::new(&std::env::var("HOME").unwrap()).join(".aws");
    for (name, text) in [
        ("config", &s.aws_config_file),
        ("credentials", &s.aws_credentials_file),
    ] {
        if let Some(text) = text {
            std::fs::create_dir_all(&aws).unwrap();
            std::fs::write(aws.join(name), text).unwrap();
        }
    }
    let report = tokio::runtime::Runtime::new().unwrap().block_on(push(&s));
    println!("RESULT {}", serde_json::to_string(&report).unwrap());
}

/// Secrets this process knows: the AWS credentials the chain resolves, and the ECR token.
async fn known_secrets(s: &Scenario) -> Vec<String> {
    use aws_credential_types::provider::ProvideCredentials;
    let config = load_sdk_config(&s.options(), Some(&s.region)).await;
    // The base keys from the environment (the AssumeRole scenarios' source identity), then what
    // the chain resolves (for IMDS: the very credentials in use; the stand-in serves one set).
    let mut out: Vec<String> = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ]
    .iter()
    .filter_map(|v| std::env::var(v).ok())
    .collect();
    if let Some(p) = config.credentials_provider()
        && let Ok(c) = p.provide_credentials().await
    {
        out.push(c.access_key_id().to_string());
        out.push(c.secret_access_key().to_string());
        out.extend(c.session_token().map(str::to_string));
    }
    out
}

fn fail(step: &str, shown: String, missing_action: Option<String>, secrets: &[String]) -> Report {
    let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_no_secret(&format!("the {step} error"), &shown, &secret_refs);
    let error = shown.lines().next().map(str::to_string);
    Report {
        pushed: false,
        failed_step: Some(step.into()),
        error,
        missing_action,
        secrets_checked: secrets.len(),
    }
}

/// Display and Debug of an error and of every source.
fn everything_shown(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = format!("{e}\n{e:?}");
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!("\n{c}\n{c:?}"));
        cur = c.source();
    }
    s
}

fn ecr_action(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(ecr) = c.downcast_ref::<EcrError>() {
            return ecr.missing_action().map(str::to_string);
        }
        if let Some(d) = c.downcast_ref::<ocipush::dest::DestError>()
            && let Some(ecr) = d.downcast_ref::<EcrError>()
        {
            return ecr.missing_action().map(str::to_string);
        }
        cur = c.source();
    }
    None
}

async fn push(s: &Scenario) -> Report {
    let mut secrets = known_secrets(s).await;
    let host = s.reference.split('/').next().unwrap().to_string();
    let rh = RegistryHost {
        logical: &host,
        endpoint: &host,
    };
    let provider = EcrCredentialProvider::new(s.options());
    let mut token = None;
    for round in 0..3 {
        if round == 2 {
            provider.invalidate(&rh);
        }
        match provider.credentials(&rh).await {
            Err(e) => {
                let action = ecr_action(&e);
                return fail("token", everything_shown(&e), action, &secrets);
            }
            Ok(Some(Credential::Basic { username, password })) => {
                assert_eq!(username, "AWS");
                assert_eq!(password.expose(), format!("{}-auth-token", s.account));
                token = Some(password.expose().to_string());
            }
            Ok(other) => panic!("unexpected credentials {other:?}"),
        }
    }
    secrets.extend(token);
    // Debug output of the provider (it holds the token now) shows no secret.
    let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_no_secret(
        "the provider's Debug",
        &format!("{provider:?}"),
        &secret_refs,
    );

    let dest = EcrApiDestination::connect(&s.reference, &s.options())
        .await
        .unwrap();
    let img = test_image();
    let dir = tempfile::tempdir().unwrap();
    let mut blobs: Vec<(ocipush::image::Descriptor, Box<dyn BlobSource>)> = vec![];
    for (i, b) in img.layers.iter().chain([&img.config]).enumerate() {
        if b.bytes.len() > 1024 * 1024 {
            let path = dir.path().join(format!("blob{i}"));
            std::fs::write(&path, &b.bytes).unwrap();
            blobs.push((b.descriptor.clone(), Box::new(FileBlob { path })));
        } else {
            blobs.push((b.descriptor.clone(), Box::new(BytesBlob(b.bytes.clone()))));
        }
    }
    let descriptors: Vec<_> = blobs.iter().map(|(d, _)| d.clone()).collect();
    let exist = match dest.blobs_exist(&descriptors).await {
        Ok(e) => e,
        Err(e) => {
            return fail(
                "blobs_exist",
                everything_shown(&e),
                ecr_action(&e),
                &secrets,
            );
        }
    };
    assert_eq!(exist, vec![false; descriptors.len()]);
    for (d, src) in &blobs {
        let last = std::sync::atomic::AtomicU64::new(0);
        let progress = |n: u64| last.store(n, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = dest.put_blob(d, src.as_ref(), &progress).await {
            return fail("put_blob", everything_shown(&e), ecr_action(&e), &secrets);
        }
        assert_eq!(last.load(std::sync::atomic::Ordering::Relaxed), d.size);
    }
    // Pushing a blob that is already there succeeds (LayerAlreadyExistsException).
    dest.put_blob(&blobs[0].0, blobs[0].1.as_ref(), &|_| {})
        .await
        .unwrap();
    assert_eq!(
        dest.blobs_exist(&descriptors).await.unwrap(),
        vec![true; descriptors.len()]
    );
    match dest
        .put_manifest(&s.tag, media_types::OCI_MANIFEST, img.manifest.clone())
        .await
    {
        Ok(d) => assert_eq!(d, Some(Digest::of(&img.manifest))),
        Err(e) => {
            return fail(
                "put_manifest",
                everything_shown(&e),
                ecr_action(&e),
                &secrets,
            );
        }
    }
    assert_no_secret(
        "the destination's and provider's Debug",
        &format!("{dest:?} {provider:?}"),
        &secret_refs,
    );
    Report {
        pushed: true,
        secrets_checked: secrets.len(),
        ..Default::default()
    }
}
