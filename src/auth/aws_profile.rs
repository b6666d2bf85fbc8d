//! The AWS keys written in the shared config and credentials files (`~/.aws/credentials`,
//! `~/.aws/config`, or `AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE`), registered with
//! [`redact`](super::redact) so no log line shows them — as the keys from the environment are.
//! The file format (INI, `key = value` under `[profile]` sections) and the key names are
//! AWS's: <https://docs.aws.amazon.com/sdkref/latest/guide/file-format.html>.

use std::path::PathBuf;

/// Keys whose values are secrets (or identify one: the access key id is logged by some SDK
/// debug output next to the signature).
const SECRET_KEYS: [&str; 4] = [
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_security_token",
];

/// The values of the secret keys in one shared config/credentials file's text.
pub fn secrets_in(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with(['#', ';', '[']) {
                return None;
            }
            let (k, v) = line.split_once('=')?;
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim();
            (SECRET_KEYS.contains(&k.as_str()) && !v.is_empty()).then(|| v.to_string())
        })
        .collect()
}

/// The shared files the AWS SDK reads, as `env` (the process environment) names them.
pub fn files(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Vec<PathBuf> {
    let home = env("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".aws"));
    let pick = |var: &str, default: &str| {
        env(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(default)))
    };
    [
        pick("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
        pick("AWS_CONFIG_FILE", "config"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Register every AWS key of the shared files for scrubbing (unreadable files are skipped:
/// the SDK reports them when it needs them). Returns how many were registered.
pub fn register_secrets() -> usize {
    let mut n = 0;
    for path in files(|k| std::env::var_os(k)) {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for s in secrets_in(&text) {
            super::redact::register(&s);
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_in_every_profile() {
        let text = "\
[default]
aws_access_key_id = AKIADEFAULTEXAMPLE
aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
region = us-east-1
# aws_secret_access_key = commented-out
[profile ci]
AWS_SESSION_TOKEN = FwoGZXIvYXdzEXAMPLE==
role_arn = arn:aws:iam::123456789012:role/x
";
        assert_eq!(
            secrets_in(text),
            [
                "AKIADEFAULTEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "FwoGZXIvYXdzEXAMPLE=="
            ]
        );
    }

    #[test]
    fn file_locations() {
        let env = |k: &str| match k {
            "HOME" => Some("/home/u".into()),
            "AWS_CONFIG_FILE" => Some("/etc/aws.conf".into()),
            _ => None,
        };
        assert_eq!(
            files(env),
            [
                PathBuf::from("/home/u/.aws/credentials"),
                PathBuf::from("/etc/aws.conf")
            ]
        );
        assert!(files(|_| None).is_empty());
    }

    #[test]
    fn registered_keys_are_scrubbed() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials");
        std::fs::write(
            &creds,
            "[p]\naws_secret_access_key = profile-file-secret-123\n",
        )
        .unwrap();
        for s in secrets_in(&std::fs::read_to_string(&creds).unwrap()) {
            super::super::redact::register(&s);
        }
        assert_eq!(
            super::super::redact::scrub("key profile-file-secret-123 end"),
            "key <redacted> end"
        );
    }
}
