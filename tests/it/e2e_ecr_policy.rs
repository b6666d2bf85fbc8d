//! `ocipush iam-policy` emits exactly what each option calls: a role holding only the policy it
//! prints for `--create-repository --image-tag-mutability IMMUTABLE --scan-on-push --scan` pushes
//! with those very options through real moto (IAM enforced), every action the role called is in
//! the policy, and every action of the policy was called but `ecr:GetAuthorizationToken`, which
//! only the registry-endpoint route calls (`e2e_ecr::instance_role_pushes_over_the_registry_endpoint`
//! proves it there). moto checks actions, not resources; the resources are checked by
//! `e2e_ecr::iam_policy_output`.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::fixtures::alpine_base_registry;
use crate::common::ocipush::{Sandbox, assert_pushed, describe, stdout};
use crate::common::testdata;
use crate::e2e_ecr::ecr_support::{ECR_CONTAINERISE, Moto};

const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

/// Every action an identity policy allows.
fn actions(policy: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for st in policy["Statement"].as_array().unwrap() {
        match &st["Action"] {
            Value::String(s) => {
                out.insert(s.clone());
            }
            Value::Array(a) => out.extend(a.iter().map(|x| x.as_str().unwrap().to_string())),
            other => panic!("Action: {other}"),
        }
    }
    out
}

#[test]
fn the_printed_policy_is_exactly_what_the_push_options_call() {
    let options = [
        "--create-repository",
        "--image-tag-mutability",
        "IMMUTABLE",
        "--scan-on-push",
        "--scan",
    ];
    let repo = format!("{HOST}/made-by-push");
    let sb = Sandbox::new();
    let mut cmd = sb.command();
    cmd.arg("iam-policy").arg(&repo).args(options);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let printed = stdout(&out);
    let policy: Value = serde_json::from_str(&printed).unwrap();
    let allowed = actions(&policy);
    assert!(
        !allowed.contains("ecr:PutImageTagMutability")
            && !allowed.contains("ecr:PutImageScanningConfiguration"),
        "CreateRepository carries those settings: {policy:#}"
    );

    let moto = Moto::start_with(ECR_CONTAINERISE, &[("printed", &printed)], &[]);
    let _alpine = alpine_base_registry(&sb);
    let mut cmd = sb.command();
    cmd.env_remove("AWS_EC2_METADATA_DISABLED")
        .env(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            &moto.info.roles["printed"].imds,
        )
        .env("AWS_ENDPOINT_URL", &moto.info.moto)
        .arg("--registries-conf")
        .arg(sb.registries_conf())
        .arg("--ecr-api")
        .args(options)
        .arg(testdata("hello/Dockerfile"))
        .arg(format!("{repo}:v1"));
    let out = cmd.output().unwrap();
    assert_pushed(&out, &repo);

    let calls = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(moto.calls_with_status());
    let by_role: Vec<_> = calls
        .iter()
        .filter(|c| c.caller == "assumed-role" && c.action.starts_with("ecr:"))
        .collect();
    assert!(
        by_role.iter().all(|c| c.status == Some(200)),
        "moto refused a call: {calls:#?}"
    );
    let called: BTreeSet<String> = by_role.iter().map(|c| c.action.clone()).collect();
    assert!(
        called.is_subset(&allowed),
        "called beyond the policy: {:?}",
        called.difference(&allowed).collect::<Vec<_>>()
    );
    let mut unused: Vec<_> = allowed.difference(&called).collect();
    unused.retain(|a| *a != "ecr:GetAuthorizationToken");
    assert!(
        unused.is_empty(),
        "the policy allows actions the push never called: {unused:?}"
    );
    for action in ["ecr:CreateRepository", "ecr:StartImageScan"] {
        assert!(called.contains(action), "{action}: {calls:#?}");
    }
}
