//! Amazon ECR Public (`public.ecr.aws/<alias>/<repository>`) end to end, with the real `ocipush`
//! binary. What is real and what stands in:
//!
//! * moto has no ECR Public service and no `sts:GetServiceBearerToken` (asserted below, as the
//!   reason for the stand-in): the ECR Public API's `GetAuthorizationToken` is answered by a
//!   stand-in inside the moto script (`tests/support/moto_ecr.py`), in the AWS JSON 1.1 protocol
//!   (`X-Amz-Target: SpencerFrontendService.GetAuthorizationToken`), checking the SigV4 scope
//!   (`us-east-1/ecr-public/aws4_request`) and leaving the allow/deny decision to moto's IAM
//!   (the caller's signature and policies: user or assumed role);
//! * the build instance gets its role's credentials over IMDSv2 (the stand-in of `e2e_ecr`),
//!   with an empty environment otherwise; `AWS_ENDPOINT_URL_ECR_PUBLIC` points the ECR Public
//!   client at moto, nothing else;
//! * `public.ecr.aws` is the real CNCF registry behind the fault proxy's Bearer gate, which
//!   challenges as public.ecr.aws does (`Bearer realm=…/token,service="public.ecr.aws",scope="aws"`)
//!   and issues tokens only for Basic `AWS:<the stand-in's password>`; registries.conf maps the
//!   host to it. What was pushed is read back from the registry with skopeo and run.

use std::process::Output;

use base64::Engine as _;

use crate::common::fault_proxy::{Fault, FaultProxy, Rule};
use crate::common::fixtures::{copy_and_unpack, seed_alpine};
use crate::common::ocipush::{
    Sandbox, assert_failed, assert_pushed, describe, run_watched, stderr, stdout,
};
use crate::common::registry::{RegistryServer, assert_push_did_not_read_back};
use crate::common::testdata;
use crate::common::tools::{run_image, skopeo_inspect_output};
use crate::e2e_ecr::ecr_support::{Call, Moto, policy_without, redact};

const ALIAS: &str = "a1b2c3d4";
const REPOSITORY: &str = "public.ecr.aws/a1b2c3d4/app";

/// ECR Public's registry challenge (service and scope), as public.ecr.aws answers `GET /v2/`.
const SERVICE: &str = "public.ecr.aws";
const SCOPE: &str = "aws";

/// `public.ecr.aws`: the real registry behind a Bearer gate taking `AWS:<password>`, Alpine from
/// its own anonymous registry, and a sandbox whose registries.conf maps both.
struct Public {
    sb: Sandbox,
    reg: RegistryServer,
    proxy: FaultProxy,
    alpine: RegistryServer,
}

impl Public {
    fn start(password: &str) -> Public {
        let reg = RegistryServer::start();
        let proxy = FaultProxy::start(reg.port());
        proxy.require_bearer_as("AWS", password, SERVICE, SCOPE);
        let alpine = RegistryServer::start();
        seed_alpine(&alpine, "library/alpine:latest");
        let sb = Sandbox::new();
        let alpine_location = format!("{}/library/alpine", alpine.addr());
        sb.set_registries(&[
            ("docker.io/library/alpine", alpine_location.as_str()),
            ("public.ecr.aws", proxy.addr().as_str()),
        ]);
        Public {
            sb,
            reg,
            proxy,
            alpine,
        }
    }

    /// `ocipush [extra…] testdata/hello/Dockerfile REPOSITORY:v1` with `env` added to the
    /// sandbox's clean environment.
    fn push(&self, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.sb.command();
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.arg("--registries-conf")
            .arg(self.sb.registries_conf())
            .args(extra)
            .arg(testdata("hello/Dockerfile"))
            .arg(format!("{REPOSITORY}:v1"));
        run_watched(cmd)
    }

    /// The environment of a build instance whose role's credentials come from `imds`, with the
    /// ECR Public API at `moto`.
    fn instance_env<'a>(imds: &'a str, moto: &'a str) -> Vec<(&'static str, &'a str)> {
        vec![
            ("AWS_EC2_METADATA_DISABLED", "false"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds),
            ("AWS_ENDPOINT_URL_ECR_PUBLIC", moto),
        ]
    }

    /// Whether the registry has `a1b2c3d4/app:v1` (asked of the registry itself).
    fn has_v1(&self) -> bool {
        skopeo_inspect_output(
            &format!("docker://{}/{ALIAS}/app:v1", self.reg.addr()),
            false,
            None,
        )
        .status
        .success()
    }
}

/// The identity policy `ocipush iam-policy REPOSITORY` prints (exit 0).
fn printed_policy() -> String {
    let out = Sandbox::new().ocipush(["iam-policy", REPOSITORY]);
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn calls(moto: &Moto) -> Vec<Call> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(moto.calls_with_status())
}

/// Whether the installed moto serves ECR Public: an `ecr-public` service and STS's
/// `GetServiceBearerToken`.
fn moto_serves_ecr_public() -> (bool, bool) {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "from moto.backend_index import backend_url_patterns as b; \
             import moto.sts.responses as r; \
             print(any('public' in n for n, _ in b), \
             hasattr(r.TokenResponse, 'get_service_bearer_token'))",
        ])
        .output()
        .expect("python3 with moto[server] 5.2.5 (./scripts/install-deps.sh --moto)");
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|w| w == "True");
    (it.next().unwrap(), it.next().unwrap())
}

#[test]
fn moto_lacks_ecr_public_which_is_why_its_token_api_has_a_stand_in() {
    assert_eq!(
        moto_serves_ecr_public(),
        (false, false),
        "moto now serves ECR Public: test against it instead of the stand-in in tests/support/moto_ecr.py"
    );
}

#[test]
fn a_build_instance_pushes_to_ecr_public_with_a_token_from_the_ecr_public_api() {
    // The role's only policy is the one `ocipush iam-policy` prints.
    let moto = Moto::start(&printed_policy());
    let public = Public::start(&moto.info.ecr_public_password);
    let mut env = Public::instance_env(&moto.info.imds, &moto.info.moto);
    env.push(("RUST_LOG", "trace"));
    let out = public.push(&["-vvv"], &env);
    let digest = assert_pushed(&out, REPOSITORY);
    // At the highest verbosity, neither the token's password nor the token itself is shown.
    let password = &moto.info.ecr_public_password;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}"));
    let shown = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        !shown.contains(password.as_str()) && !shown.contains(&token),
        "a secret was shown: {}",
        redact(&shown, &[password, &token])
    );

    // One token, from ECR Public's API (signed for us-east-1/ecr-public), as the role; no
    // private-ECR token was asked for.
    let calls = calls(&moto);
    let public_tokens: Vec<_> = calls
        .iter()
        .filter(|c| c.action == "ecr-public:GetAuthorizationToken")
        .collect();
    assert_eq!(public_tokens.len(), 1, "one token per push: {calls:#?}");
    let t = public_tokens[0];
    assert_eq!(
        (t.caller.as_str(), t.status),
        ("assumed-role", Some(200)),
        "{calls:#?}"
    );
    assert!(
        t.scope
            .as_deref()
            .is_some_and(|s| s.ends_with("/us-east-1/ecr-public/aws4_request")),
        "{calls:#?}"
    );
    assert!(
        !calls.iter().any(|c| c.action.starts_with("ecr:")),
        "{calls:#?}"
    );

    // The registry's token endpoint got the stand-in's `AWS:<password>` (it issues tokens for
    // nothing else), and every request past the challenges carried a token.
    let log = public.proxy.log();
    let token_requests: Vec<_> = log.iter().filter(|e| e.path() == "/token").collect();
    assert!(
        !token_requests.is_empty()
            && token_requests
                .iter()
                .all(|e| e.authorized && e.status == Some(200)),
        "{log:#?}"
    );
    assert!(!public.proxy.tokens_issued().is_empty());
    assert_push_did_not_read_back(&public.reg.access_log(), &format!("{ALIAS}/app"), "v1");

    // What was pushed, read back from the registry and run.
    let img = copy_and_unpack(
        &format!("docker://{}/{ALIAS}/app@{digest}", public.reg.addr()),
        None,
    );
    let ran = run_image(&img.rootfs, &img.config);
    assert_eq!(ran.stdout, "hello\n", "{ran:?}");
}

#[test]
fn an_ecr_public_token_about_to_expire_is_fetched_again() {
    // Tokens that expire a minute after issue: inside the provider's five-minute margin, so
    // each is used once and then fetched afresh (a 12-hour token is fetched once: above).
    let moto = Moto::start_with_args(
        &printed_policy(),
        &[],
        &[],
        &["--ecr-public-expires-in", "60"],
    );
    let public = Public::start(&moto.info.ecr_public_password);
    let env = Public::instance_env(&moto.info.imds, &moto.info.moto);
    let out = public.push(&[], &env);
    assert_pushed(&out, REPOSITORY);
    let calls = calls(&moto);
    let tokens = calls
        .iter()
        .filter(|c| c.action == "ecr-public:GetAuthorizationToken" && c.status == Some(200))
        .count();
    assert!(tokens >= 2, "the token was not fetched again: {calls:#?}");
}

#[test]
fn a_role_without_sts_get_service_bearer_token_is_told_both_actions_and_nothing_is_pushed() {
    let policy = policy_without(&printed_policy(), "sts:GetServiceBearerToken");
    assert!(!policy.contains("sts:"), "{policy}");
    let moto = Moto::start(&policy);
    let public = Public::start(&moto.info.ecr_public_password);
    let env = Public::instance_env(&moto.info.imds, &moto.info.moto);
    let out = public.push(&[], &env);
    let err = assert_failed(&out, 1);
    eprintln!("no sts:GetServiceBearerToken:\n{err}");
    for needed in [
        "`ecr-public:GetAuthorizationToken` and `sts:GetServiceBearerToken` on `*`",
        "(AWS says `sts:GetServiceBearerToken` is missing)",
        "is not authorized to perform: sts:GetServiceBearerToken on resource: *",
        "assumed-role/containerise/",
        "us-east-1",
        "Amazon ECR Public asked for credentials",
    ] {
        assert!(err.contains(needed), "missing {needed:?} in: {err}");
    }
    // moto's IAM refused it (the role has ecr-public:GetAuthorizationToken, not the STS action).
    let calls = calls(&moto);
    assert!(
        calls
            .iter()
            .any(|c| c.action == "ecr-public:GetAuthorizationToken"
                && c.caller == "assumed-role"
                && c.status == Some(400)),
        "{calls:#?}"
    );
    assert!(public.proxy.tokens_issued().is_empty());
    assert!(!public.has_v1());
}

#[test]
fn a_docker_login_for_ecr_public_wins_and_a_refusal_names_the_ecr_public_action() {
    // No AWS identity at all (no keys, IMDS off): only the login's credentials exist.
    let password = "ecr-public-from-docker-login";
    let public = Public::start(password);
    public.sb.login(&[("public.ecr.aws", "AWS", password)]);
    let out = public.push(&[], &[]);
    let digest = assert_pushed(&out, REPOSITORY);
    assert!(!public.proxy.tokens_issued().is_empty());
    let img = copy_and_unpack(
        &format!("docker://{}/{ALIAS}/app@{digest}", public.reg.addr()),
        None,
    );
    assert_eq!(run_image(&img.rootfs, &img.config).stdout, "hello\n");

    // A registry refusal is named in ECR Public's terms: the ecr-public action and the
    // region-less repository ARN (the one ECR names, else one with `*` for the account).
    let manifests = format!("/v2/{ALIAS}/app/manifests/");
    public.proxy.add(Rule::new(
        "PUT",
        &manifests,
        usize::MAX,
        Fault::ecr_denied(
            "ecr-public:PutImage",
            "arn:aws:ecr-public::123456789012:repository/app",
        ),
    ));
    let err = assert_failed(&public.push(&[], &[]), 1);
    eprintln!("DENIED:\n{err}");
    assert!(
        err.contains(
            "needs `ecr-public:PutImage` on `arn:aws:ecr-public::123456789012:repository/app`"
        ) && err.contains(&format!("ocipush iam-policy {REPOSITORY}")),
        "{err}"
    );
    public.proxy.clear();
    public.proxy.add(Rule::new(
        "PUT",
        &manifests,
        usize::MAX,
        Fault::Status {
            status: 403,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#
                .into(),
        },
    ));
    let err = assert_failed(&public.push(&[], &[]), 1);
    eprintln!("DENIED, no action named:\n{err}");
    assert!(
        err.contains("checked as ecr-public:PutImage")
            && err
                .contains("needs `ecr-public:PutImage` on `arn:aws:ecr-public::*:repository/app`"),
        "{err}"
    );
}

#[test]
fn without_credentials_a_push_says_how_and_ecr_only_options_are_refused_before_the_build() {
    let public = Public::start("unused");
    // No login, no AWS identity: the registry is asked anonymously (said as a fallback: the
    // base is pulled without credentials) and refuses the push.
    let err = assert_failed(&public.push(&["--progress", "rawjson"], &[]), 1);
    eprintln!("no credentials:\n{err}");
    let events = crate::e2e_options::rawjson_events(&err);
    let anonymous = crate::e2e_options::fallbacks(&events, "anonymous_pull");
    assert!(!anonymous.is_empty(), "{err}");
    assert_eq!(anonymous[0]["step"], "authenticating to public.ecr.aws");
    assert!(
        err.contains("Amazon ECR Public asked for credentials")
            && err.contains("no ECR Public token could be had from the AWS credential chain")
            && err.contains("aws ecr-public get-login-password"),
        "{err}"
    );
    assert!(!public.has_v1());

    let (before, base_reads) = (public.proxy.log().len(), public.alpine.access_log().len());
    for (flag, says) in [
        ("--ecr-api", "over its registry endpoint only"),
        (
            "--create-repository",
            "aws ecr-public create-repository --repository-name app --region us-east-1",
        ),
        ("--scan", "no image scanning"),
    ] {
        let out = public.push(&[flag], &[]);
        let err = assert_failed(&out, 1);
        eprintln!("{flag}:\n{err}");
        assert!(
            err.contains(&format!("{flag} cannot be used for {REPOSITORY}")) && err.contains(says),
            "{err}"
        );
    }
    assert_eq!(
        public.alpine.access_log().len(),
        base_reads,
        "refused before the build, which would read the base image"
    );
    assert_eq!(
        public.proxy.log().len(),
        before,
        "the refusals reached the registry: {:#?}",
        public.proxy.log()
    );

    // A reference without a repository under the alias.
    let mut cmd = public.sb.command();
    cmd.arg(testdata("hello/Dockerfile"))
        .arg("public.ecr.aws/app:v1");
    let err = assert_failed(&cmd.output().unwrap(), 1);
    assert!(
        err.contains("public.ecr.aws/<registry alias>/<repository>"),
        "{err}"
    );
}

#[test]
fn iam_policy_for_ecr_public_notes_the_unknown_account() {
    let sb = Sandbox::new();
    let out = sb.ocipush(["iam-policy", REPOSITORY]);
    assert!(out.status.success(), "{}", describe(&out));
    let policy: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        policy["Statement"][0]["Action"],
        serde_json::json!([
            "ecr-public:GetAuthorizationToken",
            "sts:GetServiceBearerToken"
        ])
    );
    assert_eq!(
        policy["Statement"][1]["Resource"],
        "arn:aws:ecr-public::*:repository/app"
    );
    assert!(stderr(&out).contains("--account"), "{}", describe(&out));

    let out = sb.ocipush(["iam-policy", REPOSITORY, "--account", "123456789012"]);
    assert!(out.status.success(), "{}", describe(&out));
    let policy: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        policy["Statement"][1]["Resource"],
        "arn:aws:ecr-public::123456789012:repository/app"
    );
    assert!(!stderr(&out).contains("--account"), "{}", describe(&out));

    let out = sb.ocipush(["iam-policy", REPOSITORY, "--scan"]);
    let err = assert_failed(&out, 2);
    assert!(err.contains("no image scanning"), "{err}");
}
