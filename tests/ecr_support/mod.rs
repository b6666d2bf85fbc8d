//! Helpers for the ECR tests: [`Moto`] (real moto with IAM enforcement, an IMDSv2 stand-in and
//! an ECR Public API stand-in whose IAM decisions are moto's, from `tests/support/moto_ecr.py`),
//! an admin ECR client for verification, the small test image, and [`run_child`] for scenarios
//! that need their own process environment (aws-config reads the environment; tests never
//! mutate their own).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Output, Stdio};

use bytes::Bytes;
use ocipush::digest::Digest;
use ocipush::image::Descriptor;
use ocipush::image::media_types;
use serde::{Deserialize, Serialize};

/// The reference policy `ECRContainerise` from the guide (moto checks actions, not resources:
/// the script rewrites every Resource to `*`).
pub const ECR_CONTAINERISE: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    { "Effect": "Allow",
      "Action": ["ecr:PutLifecyclePolicy", "ecr:PutImageTagMutability", "ecr:StartImageScan", "ecr:CreateRepository",
                 "ecr:PutImageScanningConfiguration", "ecr:UploadLayerPart", "ecr:BatchDeleteImage", "ecr:DeleteLifecyclePolicy",
                 "ecr:DeleteRepository", "ecr:PutImage", "ecr:CompleteLayerUpload", "ecr:StartLifecyclePolicyPreview",
                 "ecr:InitiateLayerUpload", "ecr:DeleteRepositoryPolicy"],
      "Resource": "arn:aws:ecr:us-east-1:123456789012:repository/ec2-ecr-test" },
    { "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*" },
    { "Effect": "Allow", "Action": "ecr:BatchCheckLayerAvailability",
      "Resource": "arn:aws:ecr:us-east-1:123456789012:repository/ec2-ecr-test" }
  ]
}"#;

/// `ECR_CONTAINERISE` without `action`.
pub fn containerise_without(action: &str) -> String {
    policy_without(ECR_CONTAINERISE, action)
}

/// The identity policy `policy` without `action` (a statement left with no action is dropped).
pub fn policy_without(policy: &str, action: &str) -> String {
    let mut p: serde_json::Value = serde_json::from_str(policy).unwrap();
    for st in p["Statement"].as_array_mut().unwrap() {
        match &mut st["Action"] {
            serde_json::Value::Array(a) => a.retain(|x| x != action),
            serde_json::Value::String(s) if s == action => st["Action"] = serde_json::json!([]),
            _ => {}
        }
    }
    p["Statement"]
        .as_array_mut()
        .unwrap()
        .retain(|st| st["Action"] != serde_json::json!([]));
    p.to_string()
}

/// A test user's keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub arn: String,
    pub key: String,
    pub secret: String,
}

/// A role of the moto setup and the IMDSv2 stand-in that serves its credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Role {
    pub arn: String,
    pub imds: String,
}

/// What the moto script prints once it is ready.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MotoInfo {
    pub moto: String,
    /// The IMDSv2 stand-in of the role `containerise`.
    pub imds: String,
    pub account: String,
    pub region: String,
    pub repository: String,
    /// The ARN of the role `containerise`.
    pub role_arn: String,
    /// The external id every role's trust policy requires of `builder` (moto 5.2.5 denies a
    /// wrong one, but lets a missing one pass).
    #[serde(default)]
    pub external_id: String,
    /// Every role (`containerise` and the extra ones), by name.
    #[serde(default)]
    pub roles: std::collections::BTreeMap<String, Role>,
    pub admin: User,
    pub builder: User,
    /// The password inside the ECR Public stand-in's token (`AWS:<password>`).
    #[serde(default)]
    pub ecr_public_password: String,
}

/// One ECR/STS request moto served after the setup.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Call {
    /// `ecr:PutImage`, `sts:AssumeRole`, ...
    pub action: String,
    /// `admin`, `builder`, `assumed-role`, `anonymous` or `unknown`.
    pub caller: String,
    /// The HTTP status moto answered.
    pub status: Option<u16>,
    /// For `ecr:UploadLayerPart`: the part.
    #[serde(default)]
    pub part: Option<Part>,
    /// Whether moto's answer was replaced by an injected 500 (`--fail-upload-part`): `status`
    /// is then what moto answered, not what the client saw.
    #[serde(default)]
    pub injected: bool,
    /// For ECR Public calls: the SigV4 credential scope (`<date>/<region>/<service>/aws4_request`).
    #[serde(default)]
    pub scope: Option<String>,
}

/// One `UploadLayerPart` request, as sent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Part {
    pub upload: Option<String>,
    pub first: Option<u64>,
    pub last: Option<u64>,
    pub bytes: Option<u64>,
}

/// Checks what moto 5.2.5 does not: the parts of each upload that moto accepted are contiguous
/// from byte 0, `partLastByte` matches the part's length, every part but the last is at least
/// 5 MiB (ECR's `LayerPartTooSmallException`) and none exceeds 20 MiB (the API model's limit).
/// Returns the number of parts of each upload, in upload order.
pub fn assert_parts_valid(calls: &[Call]) -> Vec<usize> {
    const MIB: u64 = 1024 * 1024;
    let mut uploads: Vec<(String, Vec<Part>)> = vec![];
    for c in calls {
        let (Some(p), Some(200)) = (&c.part, c.status) else {
            continue;
        };
        let id = p.upload.clone().expect("uploadId in UploadLayerPart");
        match uploads.iter_mut().find(|(u, _)| *u == id) {
            Some((_, parts)) => parts.push(p.clone()),
            None => uploads.push((id, vec![p.clone()])),
        }
    }
    for (id, parts) in &uploads {
        let mut next = 0;
        for (i, p) in parts.iter().enumerate() {
            let (first, last, bytes) = (p.first.unwrap(), p.last.unwrap(), p.bytes.unwrap());
            assert_eq!(
                first, next,
                "upload {id}: part {i} is not contiguous: {parts:?}"
            );
            assert_eq!(
                last + 1 - first,
                bytes,
                "upload {id}: part {i}'s partLastByte: {parts:?}"
            );
            assert!(
                bytes <= 20 * MIB,
                "upload {id}: part {i} is over 20 MiB: {parts:?}"
            );
            if i + 1 < parts.len() {
                assert!(
                    bytes >= 5 * MIB,
                    "upload {id}: part {i} is under 5 MiB: {parts:?}"
                );
            }
            next = last + 1;
        }
    }
    uploads.iter().map(|(_, p)| p.len()).collect()
}

impl MotoInfo {
    pub fn host(&self) -> String {
        format!("{}.dkr.ecr.{}.amazonaws.com", self.account, self.region)
    }
    pub fn reference(&self) -> String {
        format!("{}/{}", self.host(), self.repository)
    }
}

/// A running moto (+ IMDS stand-in); killed on drop.
pub struct Moto {
    child: Child,
    _stdin: ChildStdin,
    _dir: tempfile::TempDir,
    pub info: MotoInfo,
}

impl Moto {
    /// Start moto with `policy` as the role's policy. Ready when the script prints its JSON line
    /// (it prints only after both servers listen and the setup is done).
    pub fn start(policy: &str) -> Moto {
        Moto::start_with(policy, &[], &[])
    }

    /// Start moto with `policy` as the policy of the role `containerise`, more roles
    /// `(name, policy)` (each with its own IMDSv2 stand-in) and more repositories besides
    /// `ec2-ecr-test`.
    pub fn start_with(policy: &str, roles: &[(&str, &str)], repositories: &[&str]) -> Moto {
        Moto::start_with_args(policy, roles, repositories, &[])
    }

    /// Like [`start_with`](Self::start_with), with more arguments for the script (e.g.
    /// `--fail-upload-part N`).
    pub fn start_with_args(
        policy: &str,
        roles: &[(&str, &str)],
        repositories: &[&str],
        args: &[&str],
    ) -> Moto {
        let dir = tempfile::tempdir().unwrap();
        let policy_file = dir.path().join("policy.json");
        std::fs::write(&policy_file, policy).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/moto_ecr.py");
        let mut cmd = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()));
        cmd.arg(script).arg("--policy-file").arg(&policy_file);
        for (name, policy) in roles {
            let f = dir.path().join(format!("role-{name}.json"));
            std::fs::write(&f, policy).unwrap();
            cmd.arg("--role").arg(format!("{name}={}", f.display()));
        }
        for r in repositories {
            cmd.arg("--repository").arg(r);
        }
        cmd.args(args);
        // Its stderr goes to a file, shown if it does not start.
        let log_path = dir.path().join("moto.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("python3 with moto[server] 5.2.5 and boto3 must be installed (./scripts/install-deps.sh --moto)");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let info: MotoInfo = match serde_json::from_str(&line) {
            Ok(i) => i,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!(
                    "moto_ecr.py did not start ({e}): {line:?}; is moto[server] 5.2.5 installed \
                     (./scripts/install-deps.sh --moto)? Its stderr:\n{log}"
                )
            }
        };
        Moto {
            child,
            _stdin: stdin,
            _dir: dir,
            info,
        }
    }

    /// ECR/STS actions moto served since the setup: `(action, caller)`.
    pub async fn calls(&self) -> Vec<(String, String)> {
        self.calls_with_status()
            .await
            .into_iter()
            .map(|c| (c.action, c.caller))
            .collect()
    }

    /// ECR/STS requests moto served since the setup, with the status it answered.
    pub async fn calls_with_status(&self) -> Vec<Call> {
        reqwest::get(format!("{}/_test/calls", self.info.imds))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// An ECR client as the admin user, configured explicitly (no environment).
    pub fn admin_ecr(&self) -> aws_sdk_ecr::Client {
        let creds = aws_credential_types::Credentials::new(
            &self.info.admin.key,
            &self.info.admin.secret,
            None,
            None,
            "test",
        );
        let conf = aws_sdk_ecr::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(self.info.region.clone()))
            .credentials_provider(creds)
            .endpoint_url(&self.info.moto)
            .build();
        aws_sdk_ecr::Client::from_conf(conf)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `test_name` of this test binary as a child with only `env` (plus PATH, and HOME set to an
/// empty temporary directory: no ~/.aws), and the scenario JSON in `OCIPUSH_ECR_SCENARIO`.
pub fn run_child(test_name: &str, scenario: &impl Serialize, env: &[(&str, &str)]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        test_name,
        "--exact",
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env_clear()
    .env("HOME", home.path())
    .env(
        "OCIPUSH_ECR_SCENARIO",
        serde_json::to_string(scenario).unwrap(),
    );
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "child {test_name} failed:\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The scenario a child runs, if this process is a child.
pub fn scenario<T: for<'de> Deserialize<'de>>() -> Option<T> {
    let s = std::env::var("OCIPUSH_ECR_SCENARIO").ok()?;
    Some(serde_json::from_str(&s).unwrap())
}

/// A blob of the test image.
pub struct TestBlob {
    pub descriptor: Descriptor,
    pub bytes: Bytes,
}

/// The small test image: two layers (one of 11 MiB, pushed in more than one part), a config, an OCI
/// manifest with a top-level mediaType.
pub struct TestImage {
    pub layers: Vec<TestBlob>,
    pub config: TestBlob,
    pub manifest: Bytes,
}

fn blob(media_type: &str, bytes: Vec<u8>) -> TestBlob {
    let bytes = Bytes::from(bytes);
    TestBlob {
        descriptor: Descriptor::new(media_type, Digest::of(&bytes), bytes.len() as u64),
        bytes,
    }
}

pub fn test_image() -> TestImage {
    let small = blob(
        media_types::OCI_LAYER_TAR,
        b"a small layer: hello from ocipush\n".repeat(30),
    );
    let mut big = Vec::with_capacity(11 * 1024 * 1024 + 17);
    let mut x: u32 = 0x1234_5678;
    while big.len() < 11 * 1024 * 1024 + 17 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        big.extend_from_slice(&x.to_le_bytes());
    }
    let big = blob(media_types::OCI_LAYER_TAR, big);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Cmd": ["sh", "-c", "echo hello"] },
        "rootfs": { "type": "layers", "diff_ids": [small.descriptor.digest, big.descriptor.digest] }
    });
    let config = blob(
        media_types::OCI_CONFIG,
        serde_json::to_vec(&config).unwrap(),
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": config.descriptor,
        "layers": [small.descriptor, big.descriptor],
    });
    TestImage {
        layers: vec![small, big],
        config,
        manifest: Bytes::from(serde_json::to_vec(&manifest).unwrap()),
    }
}

/// `text` with every one of `secrets` replaced by `<SECRET>` (for failure messages: a test
/// never prints a secret, not even a moto one).
pub fn redact(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_string(), |t, s| t.replace(s, "<SECRET>"))
}

/// Panics (showing `text` redacted) if `text` contains one of `secrets`.
pub fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    let found = secrets
        .iter()
        .filter(|s| !s.is_empty() && text.contains(*s))
        .count();
    assert!(
        found == 0,
        "{found} secret(s) appear in {what}: {}",
        redact(text, secrets)
    );
}
