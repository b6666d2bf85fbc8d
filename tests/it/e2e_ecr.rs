//! Amazon ECR end to end (issue 3), with the real `ocipush` binary, real moto (IAM enforced:
//! ECR API, IAM, STS) and the real CNCF registry:
//!
//! * the build-instance scenario with an EMPTY environment (no AWS keys, an empty `HOME`, no
//!   region): credentials only from the instance's role through an IMDSv2 stand-in (the one
//!   component without a real counterpart here; it speaks the IMDSv2 protocol, and serves
//!   credentials from a moto AssumeRole), moto through `AWS_ENDPOINT_URL`;
//!   * over the registry endpoint: a `docker-registry` whose htpasswd user is `AWS` with the
//!     password inside moto's `GetAuthorizationToken` token, mapped by registries.conf from the
//!     ECR host; the token comes through the credential chain (no docker config entry);
//!   * over `--ecr-api`: verified in moto as an admin identity;
//! * IAM enforcement: the reference `ECRContainerise` policy and the policy `ocipush iam-policy`
//!   prints are enough; without each push action the push fails naming it;
//! * `--role-arn` + `--external-id` with a user's keys;
//! * `ocipush iam-policy` output (partitions, FIPS, `--scan`, `--trust ec2`);
//! * no secret in any output at the highest verbosity;
//! * a missing repository is explained, and `--create-repository` creates it.
//!
//! One moto per test (each test runs in its own process under nextest); scenarios that need
//! different policies share one moto with one role (and IMDS stand-in) per policy.

#[path = "../ecr_support/mod.rs"]
pub(crate) mod ecr_support;

use std::collections::BTreeSet;
use std::process::{Command, Output};

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::common::fixtures::{alpine_base_registry, copy_and_unpack, seed_alpine};
use crate::common::ocipush::{
    Sandbox, assert_failed, assert_no_panic, assert_pushed, describe, stderr, stdout,
};
use crate::common::registry::{RegistryServer, assert_push_did_not_read_back, summarize};
use crate::common::testdata;
use crate::common::tools::{TOOL_TIMEOUT_SECS, run_image, skopeo_inspect, skopeo_inspect_raw};
use ecr_support::{
    ECR_CONTAINERISE, Moto, assert_no_secret, assert_parts_valid, containerise_without,
};

/// moto's default account and the reference registry, repository and role.
const ACCOUNT: &str = "123456789012";
const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const REPO: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ec2-ecr-test";
const REPO_ARN: &str = "arn:aws:ecr:us-east-1:123456789012:repository/ec2-ecr-test";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/containerise";

/// The five actions every push needs on the repository.
const PUSH_ACTIONS: [&str; 5] = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
];

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs a prepared ocipush command (from [`Sandbox::command`]) and returns its output.
fn run(mut cmd: Command) -> Output {
    let out = cmd.output().expect("spawn ocipush under timeout");
    assert!(
        !matches!(out.status.code(), Some(124) | Some(137)),
        "ocipush did not finish within {TOOL_TIMEOUT_SECS}s and was killed; stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `ocipush [extra…] testdata/hello/Dockerfile DESTINATION` as the build instance of `imds`:
/// the sandbox's clean environment (empty `HOME`, no docker config entry, no AWS variable, no
/// region) plus only the IMDS endpoint and moto's endpoint.
fn instance_push(
    sb: &Sandbox,
    moto: &Moto,
    imds: &str,
    destination: &str,
    extra: &[&str],
) -> Output {
    instance_push_file(
        sb,
        moto,
        imds,
        &testdata("hello/Dockerfile"),
        destination,
        extra,
    )
}

/// Like [`instance_push`], building `dockerfile` (its directory is the context).
fn instance_push_file(
    sb: &Sandbox,
    moto: &Moto,
    imds: &str,
    dockerfile: &std::path::Path,
    destination: &str,
    extra: &[&str],
) -> Output {
    let mut cmd = sb.command();
    cmd.env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds)
        .env("AWS_ENDPOINT_URL", &moto.info.moto)
        .arg("--registries-conf")
        .arg(sb.registries_conf())
        .args(extra)
        .arg(dockerfile)
        .arg(destination);
    run(cmd)
}

/// `ocipush iam-policy ARGS…`.
fn iam_policy(args: &[&str]) -> Output {
    let sb = Sandbox::new();
    let mut cmd = sb.command();
    cmd.arg("iam-policy").args(args);
    run(cmd)
}

/// The JSON documents `ocipush iam-policy ARGS…` prints on stdout (identity, then trust).
fn iam_policy_documents(args: &[&str]) -> Vec<Value> {
    let out = iam_policy(args);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_no_panic(&out);
    let text = stdout(&out);
    serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("iam-policy stdout is not JSON ({e}):\n{text}"))
}

/// Every `(action, resource)` an identity policy allows.
fn allowed(policy: &Value) -> BTreeSet<(String, String)> {
    let strings = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
            other => panic!("not a string or list: {other}"),
        }
    };
    let mut out = BTreeSet::new();
    for st in policy["Statement"].as_array().expect("Statement list") {
        assert_eq!(st["Effect"], "Allow", "{st}");
        for a in strings(&st["Action"]) {
            for r in strings(&st["Resource"]) {
                out.insert((a.clone(), r));
            }
        }
    }
    out
}

/// The password inside moto's `GetAuthorizationToken` token (base64 `AWS:<password>`), asked
/// as the admin user.
fn ecr_token(moto: &Moto) -> (String, String) {
    let out = rt().block_on(async {
        moto.admin_ecr()
            .get_authorization_token()
            .send()
            .await
            .unwrap()
    });
    let token = out.authorization_data()[0]
        .authorization_token()
        .unwrap()
        .to_string();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&token)
        .unwrap();
    let decoded = String::from_utf8(decoded).unwrap();
    let password = decoded
        .strip_prefix("AWS:")
        .unwrap_or_else(|| panic!("moto's token is not AWS:<password>"))
        .to_string();
    (token, password)
}

/// The credentials the IMDSv2 stand-in at `imds` serves (the very ones ocipush gets: the
/// stand-in hands out one set), fetched over the IMDSv2 protocol.
fn imds_credentials(imds: &str) -> Value {
    rt().block_on(async {
        let http = reqwest::Client::new();
        let token = http
            .put(format!("{imds}/latest/api/token"))
            .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .text()
            .await
            .unwrap();
        let base = format!("{imds}/latest/meta-data/iam/security-credentials/");
        let get = |url: String| {
            http.get(url)
                .header("x-aws-ec2-metadata-token", &token)
                .send()
        };
        let role = get(base.clone()).await.unwrap().text().await.unwrap();
        get(format!("{base}{role}"))
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}

/// The manifest tagged `tag` in `repository`, read as the admin user (`None`: no such tag).
fn ecr_manifest(moto: &Moto, repository: &str, tag: &str) -> Option<String> {
    let got = rt().block_on(async {
        moto.admin_ecr()
            .batch_get_image()
            .repository_name(repository)
            .image_ids(
                aws_sdk_ecr::types::ImageIdentifier::builder()
                    .image_tag(tag)
                    .build(),
            )
            .send()
            .await
            .unwrap()
    });
    assert!(got.images().len() <= 1, "{got:?}");
    got.images()
        .first()
        .map(|i| i.image_manifest().unwrap().to_string())
}

/// Asserts every blob `manifest` names is in `repository` with the size the manifest gives
/// (BatchCheckLayerAvailability as the admin user). Returns the descriptors checked.
fn assert_blobs_in_ecr(moto: &Moto, repository: &str, manifest: &Value) -> Vec<Value> {
    let mut descriptors = vec![manifest["config"].clone()];
    descriptors.extend(manifest["layers"].as_array().unwrap().iter().cloned());
    let digests: Vec<String> = descriptors
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect();
    let avail = rt().block_on(async {
        moto.admin_ecr()
            .batch_check_layer_availability()
            .repository_name(repository)
            .set_layer_digests(Some(digests.clone()))
            .send()
            .await
            .unwrap()
    });
    assert!(avail.failures().is_empty(), "blobs missing: {avail:?}");
    for d in &descriptors {
        let digest = d["digest"].as_str().unwrap();
        let layer = avail
            .layers()
            .iter()
            .find(|l| l.layer_digest() == Some(digest))
            .unwrap_or_else(|| panic!("{digest} not in {repository}: {avail:?}"));
        assert_eq!(
            layer.layer_availability(),
            Some(&aws_sdk_ecr::types::LayerAvailability::Available)
        );
        assert_eq!(layer.layer_size(), d["size"].as_i64(), "size of {digest}");
    }
    descriptors
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The pushing identity (the role, whatever the route to it) never read the target and used
/// only actions of the push-only policy.
fn assert_pusher_never_read(moto: &Moto) {
    let calls = rt().block_on(moto.calls_with_status());
    let read: Vec<_> = calls
        .iter()
        .filter(|c| {
            c.caller == "assumed-role"
                && (c.action == "ecr:BatchGetImage" || c.action == "ecr:GetDownloadUrlForLayer")
        })
        .collect();
    assert!(read.is_empty(), "the push read the target: {calls:#?}");
}

/// A sandbox whose registries.conf maps `docker.io/library/alpine` to a local registry seeded
/// with the umoci-built Alpine and, with `ecr`, the ECR host to that registry.
fn sandbox_with(alpine: &RegistryServer, ecr: Option<&RegistryServer>) -> Sandbox {
    let sb = Sandbox::new();
    let alpine_location = format!("{}/library/alpine", alpine.addr());
    let mut map = vec![("docker.io/library/alpine", alpine_location.as_str())];
    let ecr_addr = ecr.map(|e| e.addr());
    if let Some(addr) = &ecr_addr {
        map.push((HOST, addr.as_str()));
    }
    sb.set_registries(&map);
    sb
}

fn alpine_registry() -> RegistryServer {
    let a = RegistryServer::start();
    seed_alpine(&a, "library/alpine:latest");
    a
}

// ------------------------------------------------------------------ the instance scenario

#[test]
fn instance_role_pushes_over_the_registry_endpoint() {
    let moto = Moto::start(ECR_CONTAINERISE);
    assert_eq!(moto.info.account, ACCOUNT);
    assert_eq!(moto.info.role_arn, ROLE_ARN);
    let (_, password) = ecr_token(&moto);
    assert_eq!(password, format!("{ACCOUNT}-auth-token"), "moto's token");
    let alpine = alpine_registry();
    let ecr = RegistryServer::start_with_auth("AWS", &password);
    let sb = sandbox_with(&alpine, Some(&ecr));

    let out = instance_push(&sb, &moto, &moto.info.imds, &format!("{REPO}:v1"), &[]);
    // The name as the user wrote it, not the registries.conf location.
    let digest = assert_pushed(&out, REPO);
    assert_push_did_not_read_back(&ecr.access_log(), "ec2-ecr-test", "v1");

    // The token came from moto through the credential chain, as the instance's role.
    // moto's token "expired" in 2015: it must still be fetched once, not in a loop (at most
    // once more after the registry refused it, which it does not).
    let calls = rt().block_on(moto.calls_with_status());
    let tokens = calls
        .iter()
        .filter(|c| c.action == "ecr:GetAuthorizationToken" && c.caller != "admin")
        .collect::<Vec<_>>();
    assert!(
        !tokens.is_empty()
            && tokens.len() <= 2
            && tokens
                .iter()
                .all(|c| c.caller == "assumed-role" && c.status == Some(200)),
        "{calls:#?}"
    );
    assert_pusher_never_read(&moto);

    // Read back (with the ECR credentials), unpack, run: `hello`.
    let creds = Some(("AWS", password.as_str()));
    let tagged = skopeo_inspect(
        &format!("docker://{}/ec2-ecr-test:v1", ecr.addr()),
        false,
        creds,
    );
    assert_eq!(tagged["Digest"], digest.as_str(), "{tagged:#}");
    let img = copy_and_unpack(
        &format!("docker://{}/ec2-ecr-test@{digest}", ecr.addr()),
        creds,
    );
    let ran = run_image(&img.rootfs, &img.config);
    assert!(ran.status.success(), "{ran:?}");
    assert_eq!(ran.stdout, "hello\n", "{ran:?}");
}

#[test]
fn instance_role_pushes_over_the_ecr_api() {
    let moto = Moto::start(ECR_CONTAINERISE);
    let alpine = alpine_registry();
    let sb = sandbox_with(&alpine, None);
    let alpine_manifest = skopeo_inspect_raw(
        &format!("docker://{}/library/alpine:latest", alpine.addr()),
        false,
        None,
    );
    let base_layer = alpine_manifest["layers"][0].clone();
    let mark = alpine.log_mark();

    let out = instance_push(
        &sb,
        &moto,
        &moto.info.imds,
        &format!("{REPO}:v1"),
        &["--ecr-api"],
    );
    let digest = assert_pushed(&out, REPO);

    // As the admin: the tag, the manifest with the printed digest, and every blob it names.
    let manifest = ecr_manifest(&moto, "ec2-ecr-test", "v1").expect("tag v1 in ECR");
    assert_eq!(sha256_digest(manifest.as_bytes()), digest);
    let manifest: Value = serde_json::from_str(&manifest).unwrap();
    assert!(manifest["mediaType"].is_string(), "{manifest:#}");
    let blobs = assert_blobs_in_ecr(&moto, "ec2-ecr-test", &manifest);
    assert_eq!(blobs.len(), 2, "config + the Alpine layer: {manifest:#}");

    // The base layer went from the Alpine registry into ECR: same digest and size, read
    // from the Alpine registry during the push.
    assert_eq!(manifest["layers"][0]["digest"], base_layer["digest"]);
    assert_eq!(manifest["layers"][0]["size"], base_layer["size"]);
    let layer_path = format!(
        "/v2/library/alpine/blobs/{}",
        base_layer["digest"].as_str().unwrap()
    );
    let log = alpine.access_log_since(mark);
    assert!(
        log.iter()
            .any(|e| e.method == "GET" && e.path() == layer_path && e.status == 200),
        "the Alpine layer was not read from the Alpine registry: {:#?}",
        summarize(&log)
    );

    let calls = rt().block_on(moto.calls_with_status());
    for action in PUSH_ACTIONS {
        assert!(
            calls
                .iter()
                .any(|c| c.action == action && c.caller == "assumed-role" && c.status == Some(200)),
            "{action} not called as the role: {calls:#?}"
        );
    }
    assert_pusher_never_read(&moto);
    assert_eq!(
        assert_parts_valid(&calls).len(),
        2,
        "config + layer uploads"
    );

    // What went into ECR is the image a plain registry gets (builds are reproducible): the same
    // manifest, byte for byte.
    let plain = format!("{}/hello-check", alpine.addr());
    let out = sb.ocipush([
        "--registries-conf".as_ref(),
        sb.registries_conf().as_os_str(),
        testdata("hello/Dockerfile").as_os_str(),
        format!("{plain}:v1").as_ref(),
    ]);
    assert_eq!(assert_pushed(&out, &plain), digest);
}

#[test]
fn the_ecr_api_takes_a_new_layer_part_by_part_while_it_is_built() {
    let moto = Moto::start(ECR_CONTAINERISE);
    let alpine = alpine_registry();
    let sb = sandbox_with(&alpine, None);
    let ctx = sb.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    // 25 MiB that do not compress: three parts of ECR's (moto's) part size.
    let mut x: u32 = 0x9e37_79b9;
    let big: Vec<u8> = (0..25 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(ctx.join("big.bin"), &big).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM alpine:latest\nCOPY big.bin /big.bin\nCMD [\"sh\", \"-c\", \"echo hello\"]\n",
    )
    .unwrap();
    let dockerfile = ctx.join("Dockerfile");
    let out = instance_push_file(
        &sb,
        &moto,
        &moto.info.imds,
        &dockerfile,
        &format!("{REPO}:big"),
        &["--ecr-api", "--no-cache"],
    );
    let digest = assert_pushed(&out, REPO);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("while it was built"), "{err}");

    let manifest = ecr_manifest(&moto, "ec2-ecr-test", "big").expect("tag big in ECR");
    assert_eq!(sha256_digest(manifest.as_bytes()), digest);
    let manifest: Value = serde_json::from_str(&manifest).unwrap();
    let blobs = assert_blobs_in_ecr(&moto, "ec2-ecr-test", &manifest);
    assert_eq!(
        blobs.len(),
        3,
        "config, Alpine layer, new layer: {manifest:#}"
    );
    let calls = rt().block_on(moto.calls_with_status());
    assert_pusher_never_read(&moto);
    let parts = assert_parts_valid(&calls);
    assert!(
        parts.iter().any(|&n| n >= 3),
        "the new layer went up in parts: {parts:?}"
    );

    // The same image as a plain registry build.
    let plain = format!("{}/big-check", alpine.addr());
    let out = sb.ocipush([
        "--no-cache".as_ref(),
        "--registries-conf".as_ref(),
        sb.registries_conf().as_os_str(),
        dockerfile.as_os_str(),
        format!("{plain}:v1").as_ref(),
    ]);
    assert_eq!(assert_pushed(&out, &plain), digest);
}

// ------------------------------------------------------------------ IAM enforcement

#[test]
fn iam_enforcement_reference_and_generated_policies_suffice_and_each_push_action_is_needed() {
    let generated = iam_policy(&[REPO]);
    assert_eq!(generated.status.code(), Some(0), "{}", describe(&generated));
    let generated = stdout(&generated);
    let without: Vec<(String, String, String)> = PUSH_ACTIONS
        .iter()
        .map(|a| {
            let short = a.trim_start_matches("ecr:");
            (
                a.to_string(),
                format!("without-{short}"),
                format!("denied-{}", short.to_lowercase()),
            )
        })
        .collect();
    let mut roles: Vec<(String, String)> = vec![("generated".into(), generated.clone())];
    for (action, role, _) in &without {
        roles.push((role.clone(), containerise_without(action)));
    }
    let roles_ref: Vec<(&str, &str)> = roles
        .iter()
        .map(|(n, p)| (n.as_str(), p.as_str()))
        .collect();
    let mut repos = vec!["ec2-ecr-test-generated"];
    repos.extend(without.iter().map(|(_, _, r)| r.as_str()));
    let moto = Moto::start_with(ECR_CONTAINERISE, &roles_ref, &repos);
    let alpine = alpine_registry();
    let sb = sandbox_with(&alpine, None);
    let imds = |role: &str| moto.info.roles[role].imds.clone();

    // The reference policy (ECRContainerise: no read action) is enough.
    let out = instance_push(
        &sb,
        &moto,
        &imds("containerise"),
        &format!("{REPO}:v1"),
        &["--ecr-api"],
    );
    assert_pushed(&out, REPO);
    assert!(ecr_manifest(&moto, "ec2-ecr-test", "v1").is_some());

    // So is the policy `ocipush iam-policy` prints.
    let dest = format!("{HOST}/ec2-ecr-test-generated");
    let out = instance_push(
        &sb,
        &moto,
        &imds("generated"),
        &format!("{dest}:v1"),
        &["--ecr-api"],
    );
    assert_pushed(&out, &dest);
    assert!(ecr_manifest(&moto, "ec2-ecr-test-generated", "v1").is_some());
    assert_pusher_never_read(&moto);

    // Without any one push action: exit 1, the action and `ocipush iam-policy` named, no tag.
    for (action, role, repo) in &without {
        let dest = format!("{HOST}/{repo}");
        let out = instance_push(
            &sb,
            &moto,
            &imds(role),
            &format!("{dest}:v1"),
            &["--ecr-api"],
        );
        let err = assert_failed(&out, 1);
        eprintln!("without {action}:\n{err}");
        assert!(
            err.contains(action.as_str()),
            "stderr must name {action}:\n{err}"
        );
        assert!(
            err.contains("iam-policy"),
            "stderr must point to `ocipush iam-policy`:\n{err}"
        );
        assert!(
            ecr_manifest(&moto, repo, "v1").is_none(),
            "{repo}:v1 exists after a push without {action}"
        );
        let denied = rt().block_on(moto.calls_with_status());
        assert!(
            denied
                .iter()
                .any(|c| &c.action == action && c.status.is_some_and(|s| s >= 400)),
            "moto never denied {action}: {denied:#?}"
        );
    }
}

// ------------------------------------------------------------------ --role-arn

#[test]
fn role_arn_with_external_id_from_user_keys() {
    let moto = Moto::start(ECR_CONTAINERISE);
    let sb = Sandbox::new();
    let _alpine = alpine_base_registry(&sb);
    let vendor_push = |external_id: &str| {
        let mut cmd = sb.command();
        cmd.env("AWS_ACCESS_KEY_ID", &moto.info.builder.key)
            .env("AWS_SECRET_ACCESS_KEY", &moto.info.builder.secret)
            .env("AWS_ENDPOINT_URL", &moto.info.moto)
            .args([
                "--registries-conf".as_ref(),
                sb.registries_conf().as_os_str(),
            ])
            .args([
                "--ecr-api",
                "--role-arn",
                ROLE_ARN,
                "--external-id",
                external_id,
            ])
            .arg(testdata("hello/Dockerfile"))
            .arg(format!("{REPO}:v1"));
        run(cmd)
    };

    // The role's trust policy requires the vendor's external id: a wrong one is refused
    // (so the id given is the one sent), and nothing is pushed.
    let out = vendor_push("not-the-vendor-id");
    let err = assert_failed(&out, 1);
    assert_no_secret(
        "stderr",
        &err,
        &[&moto.info.builder.key, &moto.info.builder.secret],
    );
    eprintln!("wrong external id:\n{err}");
    assert!(err.contains("AssumeRole"), "{err}");
    assert!(
        err.contains("assuming role arn:aws:iam::123456789012:role/")
            && err.contains("with an external id"),
        "the message names the role and that an external id was sent: {err}"
    );
    assert!(ecr_manifest(&moto, "ec2-ecr-test", "v1").is_none());
    let before = rt().block_on(moto.calls_with_status()).len();

    assert_eq!(moto.info.external_id, "vendor-7f3a");
    let out = vendor_push(&moto.info.external_id);
    assert_pushed(&out, REPO);
    // The calls of the push (before the admin's checks below).
    let calls = rt().block_on(moto.calls_with_status()).split_off(before);
    let manifest = ecr_manifest(&moto, "ec2-ecr-test", "v1").expect("tag v1");
    assert_blobs_in_ecr(
        &moto,
        "ec2-ecr-test",
        &serde_json::from_str(&manifest).unwrap(),
    );

    assert!(
        calls.iter().any(|c| c.action == "sts:AssumeRole"
            && c.caller == "builder"
            && c.status == Some(200)),
        "the role was not assumed with the user's keys: {calls:#?}"
    );
    let by_user: Vec<_> = calls
        .iter()
        .filter(|c| c.action.starts_with("ecr:") && c.caller != "assumed-role")
        .collect();
    assert!(
        by_user.is_empty(),
        "ECR called not as the role: {by_user:#?}"
    );
    assert_pusher_never_read(&moto);
}

// ------------------------------------------------------------------ ocipush iam-policy

#[test]
fn iam_policy_output() {
    let docs = iam_policy_documents(&[REPO]);
    assert_eq!(docs.len(), 1, "{docs:#?}");
    let push = allowed(&docs[0]);
    let mut expected: BTreeSet<(String, String)> = PUSH_ACTIONS
        .iter()
        .map(|a| (a.to_string(), REPO_ARN.to_string()))
        .collect();
    expected.insert(("ecr:GetAuthorizationToken".into(), "*".into()));
    assert_eq!(push, expected, "{:#}", docs[0]);
    assert_eq!(docs[0]["Version"], "2012-10-17");

    // --scan adds exactly ecr:StartImageScan (on the repository).
    let scan = allowed(&iam_policy_documents(&[REPO, "--scan"])[0]);
    let added: Vec<_> = scan.difference(&push).collect();
    assert_eq!(
        added,
        [&("ecr:StartImageScan".to_string(), REPO_ARN.to_string())]
    );
    assert!(push.is_subset(&scan));

    // --create-repository adds ecr:CreateRepository.
    let create = allowed(&iam_policy_documents(&[REPO, "--create-repository"])[0]);
    assert!(create.contains(&("ecr:CreateRepository".into(), REPO_ARN.into())));

    // --trust ec2: the trust policy follows, for the EC2 service.
    let docs = iam_policy_documents(&[REPO, "--trust", "ec2"]);
    assert_eq!(docs.len(), 2, "{docs:#?}");
    assert_eq!(allowed(&docs[0]), push);
    let trust = &docs[1]["Statement"][0];
    assert_eq!(
        trust["Principal"]["Service"], "ec2.amazonaws.com",
        "{trust:#}"
    );
    assert_eq!(trust["Action"], "sts:AssumeRole", "{trust:#}");

    // Partitions and regions come from the host.
    for (repo, arn) in [
        (
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app",
            "arn:aws-cn:ecr:cn-north-1:123456789012:repository/app",
        ),
        (
            "123456789012.dkr.ecr.us-gov-west-1.amazonaws.com/app",
            "arn:aws-us-gov:ecr:us-gov-west-1:123456789012:repository/app",
        ),
        (
            "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/app",
            "arn:aws:ecr:us-east-1:123456789012:repository/app",
        ),
        (
            "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/team/app",
            "arn:aws-us-gov:ecr:us-gov-west-1:123456789012:repository/team/app",
        ),
    ] {
        let got = allowed(&iam_policy_documents(&[repo])[0]);
        let mut want: BTreeSet<(String, String)> = PUSH_ACTIONS
            .iter()
            .map(|a| (a.to_string(), arn.to_string()))
            .collect();
        want.insert(("ecr:GetAuthorizationToken".into(), "*".into()));
        assert_eq!(got, want, "{repo}");
    }
    let china = iam_policy_documents(&[
        "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app",
        "--trust",
        "ec2",
    ]);
    assert_eq!(
        china[1]["Statement"][0]["Principal"]["Service"], "ec2.amazonaws.com.cn",
        "{:#}",
        china[1]
    );

    // Not an ECR repository: a usage error.
    let out = iam_policy(&["ghcr.io/owner/app"]);
    let err = assert_failed(&out, 2);
    assert!(err.contains("ghcr.io"), "{err}");
}

// ------------------------------------------------------------------ secrets

#[test]
fn no_secret_in_any_output_at_the_highest_verbosity() {
    let moto = Moto::start(ECR_CONTAINERISE);
    let (token, password) = ecr_token(&moto);
    let alpine = alpine_registry();
    let ecr = RegistryServer::start_with_auth("AWS", &password);
    let sb = sandbox_with(&alpine, Some(&ecr));
    // The instance's credentials: the stand-in serves ocipush the same set.
    let creds = imds_credentials(&moto.info.imds);
    let mut secrets: Vec<(&str, String)> = vec![("ECR token", token), ("ECR password", password)];
    for (name, field) in [
        ("access key id", "AccessKeyId"),
        ("secret access key", "SecretAccessKey"),
        ("session token", "Token"),
    ] {
        secrets.push((name, creds[field].as_str().unwrap().to_string()));
    }

    let verbose = |extra: &[&str], tag: &str| {
        let mut cmd = sb.command();
        cmd.env_remove("AWS_EC2_METADATA_DISABLED")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &moto.info.imds)
            .env("AWS_ENDPOINT_URL", &moto.info.moto)
            .env("RUST_LOG", "trace")
            .arg("-vvv")
            .arg("--registries-conf")
            .arg(sb.registries_conf())
            .args(extra)
            .arg(testdata("hello/Dockerfile"))
            .arg(format!("{REPO}:{tag}"));
        run(cmd)
    };
    let mut leaks = Vec::new();
    for (route, out) in [
        ("registry endpoint", verbose(&[], "v1")),
        ("--ecr-api", verbose(&["--ecr-api"], "v2")),
    ] {
        // Failure messages show the output with every secret replaced.
        let redact = |text: &str| {
            secrets.iter().fold(text.to_string(), |t, (_, s)| {
                t.replace(s.as_str(), "<SECRET>")
            })
        };
        assert_eq!(
            out.status.code(),
            Some(0),
            "{route}: the push failed:\n{}",
            redact(&describe(&out))
        );
        assert_pushed(&out, REPO);
        let err = stderr(&out);
        // -vvv with RUST_LOG=trace really is verbose (every registry and AWS request is logged),
        // while the SDK's and HTTP stack's wire-level TRACE (headers, bodies) is capped by design.
        assert!(
            err.lines().count() > 20 && err.contains("DEBUG"),
            "{route}: expected verbose (DEBUG) output on stderr, got:\n{}",
            redact(&err)
        );
        for (stream, text) in [("stdout", stdout(&out)), ("stderr", err)] {
            for line in text.lines() {
                let found: Vec<&str> = secrets
                    .iter()
                    .filter(|(_, s)| line.contains(s.as_str()))
                    .map(|(name, _)| *name)
                    .collect();
                if !found.is_empty() {
                    leaks.push(format!(
                        "{route}, {stream}: the {} in: {}",
                        found.join(", "),
                        redacted_excerpt(line, &secrets)
                    ));
                }
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "{} output lines carry a secret (the first 12):\n{}",
        leaks.len(),
        leaks[..leaks.len().min(12)].join("\n")
    );
    assert!(ecr_manifest(&moto, "ec2-ecr-test", "v2").is_some());
}

/// `line` around its first secret (up to 200 characters either side, the start of the line
/// kept for the log level and span), with every secret replaced by `<SECRET>`.
fn redacted_excerpt(line: &str, secrets: &[(&str, String)]) -> String {
    let mut shown = line.to_string();
    for (_, s) in secrets {
        shown = shown.replace(s.as_str(), "<SECRET>");
    }
    let at = shown.find("<SECRET>").unwrap_or(0);
    let chars: Vec<char> = shown.chars().collect();
    let at = shown[..at].chars().count();
    let head: String = chars.iter().take(120.min(at)).collect();
    let from = at.saturating_sub(200).max(head.chars().count());
    let to = (at + 200).min(chars.len());
    let middle: String = chars[from..to].iter().collect();
    let gap = if from > head.chars().count() {
        " … "
    } else {
        ""
    };
    let tail = if to < chars.len() { " …" } else { "" };
    format!("{head}{gap}{middle}{tail}")
}

// ------------------------------------------------------------------ missing repository

#[test]
fn missing_repository_is_explained_and_create_repository_creates_it() {
    let moto = Moto::start(ECR_CONTAINERISE);
    let alpine = alpine_registry();
    let sb = sandbox_with(&alpine, None);
    let dest = format!("{HOST}/does-not-exist");

    let out = instance_push(
        &sb,
        &moto,
        &moto.info.imds,
        &format!("{dest}:v1"),
        &["--ecr-api"],
    );
    let err = assert_failed(&out, 1);
    eprintln!("missing repository:\n{err}");
    assert!(err.contains("does-not-exist"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    assert!(
        err.contains("--create-repository") && err.contains("aws ecr create-repository"),
        "the message must say how to create it:\n{err}"
    );

    let out = instance_push(
        &sb,
        &moto,
        &moto.info.imds,
        &format!("{dest}:v1"),
        &["--ecr-api", "--create-repository"],
    );
    let digest = assert_pushed(&out, &dest);
    let manifest = ecr_manifest(&moto, "does-not-exist", "v1").expect("tag v1");
    assert_eq!(sha256_digest(manifest.as_bytes()), digest);
    assert_blobs_in_ecr(
        &moto,
        "does-not-exist",
        &serde_json::from_str(&manifest).unwrap(),
    );
}

/// The `ecr_push` example (the reference job from Dockerfile text, default credentials,
/// events through a channel) as the build instance: its ECR token comes from the instance
/// role through the AWS chain, the image lands in the repository and prints `hello`, and its
/// events account for every uploaded byte.
#[test]
fn the_ecr_push_example_pushes_the_reference_job_as_the_instance() {
    let moto = Moto::start(ECR_CONTAINERISE);
    let (_, password) = ecr_token(&moto);
    let alpine = alpine_registry();
    let ecr = RegistryServer::start_with_auth("AWS", &password);
    let sb = sandbox_with(&alpine, Some(&ecr));
    let mut cmd = sb.command_for(&crate::common::ocipush::example_bin("ecr_push"));
    cmd.env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &moto.info.imds)
        .env("AWS_ENDPOINT_URL", &moto.info.moto)
        .arg(format!("{REPO}:v1"));
    let out = run(cmd);
    let digest = assert_pushed(&out, REPO);
    let err = stderr(&out);
    for line in err.lines().filter(|l| l.starts_with("uploading ")) {
        // "uploading sha256:… (N bytes)": its last progress line says N.
        let (d, rest) = line["uploading ".len()..].split_once(' ').unwrap();
        let size = rest.trim_start_matches('(').trim_end_matches(" bytes)");
        assert!(
            err.contains(&format!("  {d}: {size} bytes sent"))
                && err.contains(&format!("uploaded {d}")),
            "{err}"
        );
    }
    assert!(
        err.contains("manifest sha256:") && err.contains(" as v1"),
        "{err}"
    );
    let creds = Some(("AWS", password.as_str()));
    let img = copy_and_unpack(
        &format!("docker://{}/ec2-ecr-test@{digest}", ecr.addr()),
        creds,
    );
    let ran = run_image(&img.rootfs, &img.config);
    assert_eq!(ran.stdout, "hello\n", "{ran:?}");
}
