use super::*;
use crate::registry::ErrorDetail;

fn status(code: u16, body: &str) -> RegistryError {
    RegistryError::Status {
        registry: "r".into(),
        repository: "app".into(),
        what: "uploading blob".into(),
        detail: Box::new(ErrorDetail::new(code, body.as_bytes())),
        retry_after: None,
    }
}

/// GHCR's answer to a PATCH over 4 MiB (oras-project/rust-oci-client#35).
const GHCR_416: &str = r#"{"errors":[{"code":"REQUESTED_RANGE_NOT_SATISFIABLE","message":"the request body is too large and exceeds the maximum permissible limit of 4.00MiB"}]}"#;

#[test]
fn known_hosts_have_their_limits() {
    assert_eq!(host_limits("ghcr.io").max, Some(4 * MIB));
    assert_eq!(host_limits("GHCR.IO:443").max, Some(4 * MIB));
    for ecr in [
        "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
        "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
        "123456789012.dkr-ecr.eu-west-1.on.aws",
        "public.ecr.aws",
        "PUBLIC.ECR.AWS:443",
    ] {
        assert_eq!(host_limits(ecr).min, Some(5 * MIB), "{ecr}");
        assert_eq!(host_limits(ecr).max, None, "{ecr}");
    }
    for other in [
        "docker.io",
        "127.0.0.1:5000",
        "ghcr.io.example.com",
        "dkr.ecr.example",
    ] {
        assert_eq!(host_limits(other), HostLimits::default(), "{other}");
    }
}

#[test]
fn the_chunk_size_follows_host_user_learned_and_session() {
    let none = HostLimits::default();
    let ghcr = host_limits("ghcr.io");
    let ecr = host_limits("123456789012.dkr.ecr.us-east-1.amazonaws.com");
    // Defaults per host.
    assert_eq!(chunk_size(None, none, None, None), 16 * MIB);
    assert_eq!(chunk_size(None, ghcr, None, None), 4 * MIB);
    assert_eq!(chunk_size(None, ecr, None, None), 16 * MIB);
    // --chunk-size wins over a host's default maximum, not over its minimum.
    assert_eq!(chunk_size(Some(8 * MIB), ghcr, None, None), 8 * MIB);
    assert_eq!(chunk_size(Some(2 * MIB), none, None, None), 2 * MIB);
    assert_eq!(chunk_size(Some(4 * MIB), ecr, None, None), 5 * MIB);
    // What the registry refused lowers it.
    assert_eq!(
        chunk_size(Some(8 * MIB), ghcr, Some(4 * MIB), None),
        4 * MIB
    );
    assert_eq!(chunk_size(None, none, Some(3 * MIB), None), 3 * MIB);
    // OCI-Chunk-Min-Length raises it above anything else.
    assert_eq!(chunk_size(Some(MIB), none, None, Some(6 * MIB)), 6 * MIB);
    assert_eq!(chunk_size(None, ghcr, Some(MIB), Some(6 * MIB)), 6 * MIB);
    assert_eq!(chunk_size(None, none, None, Some(20 * MIB)), 20 * MIB);
    // Never below 1 MiB.
    assert_eq!(chunk_size(Some(1), none, Some(10), None), MIB);
}

#[test]
fn too_large_answers_are_told_from_range_errors() {
    assert!(too_large(&status(416, GHCR_416)));
    assert!(too_large(&status(
        413,
        "<html>413 Request Entity Too Large</html>"
    )));
    assert!(too_large(&status(413, "")));
    // distribution-spec's 416 for an out-of-order chunk is not about size.
    assert!(!too_large(&status(
        416,
        r#"{"errors":[{"code":"RANGE_INVALID","message":"invalid content range"}]}"#
    )));
    assert!(!too_large(&status(416, "")));
    assert!(!too_large(&status(400, GHCR_416)));
}

#[test]
fn shrinking_uses_the_stated_limit_else_halves() {
    assert_eq!(shrink(16 * MIB, &status(416, GHCR_416), MIB), Some(4 * MIB));
    assert_eq!(shrink(16 * MIB, &status(413, ""), MIB), Some(8 * MIB));
    // The stated limit is not below the current size: halve.
    assert_eq!(shrink(4 * MIB, &status(416, GHCR_416), MIB), Some(2 * MIB));
    // Never below the floor; nothing smaller to try at the floor.
    assert_eq!(shrink(6 * MIB, &status(413, ""), 5 * MIB), Some(5 * MIB));
    assert_eq!(shrink(5 * MIB, &status(413, ""), 5 * MIB), None);
    assert_eq!(shrink(MIB, &status(413, ""), MIB), None);
}

#[test]
fn stated_limits_are_read_with_their_units() {
    assert_eq!(
        stated_limit("exceeds the maximum permissible limit of 4.00MiB"),
        Some(4 * MIB)
    );
    assert_eq!(stated_limit("limit is 10 MB"), Some(10 * MIB));
    assert_eq!(stated_limit("at most 1.5GiB"), Some(1536 * MIB));
    assert_eq!(stated_limit("max 4194304 bytes"), Some(4 * MIB));
    assert_eq!(stated_limit("HTTP/1.1 v2.0 no size here"), None);
    assert_eq!(stated_limit("sha256:abc4MiB"), None);
}

#[test]
fn chunk_sizes_given_by_users_are_parsed_and_bounded() {
    assert_eq!(parse_chunk_size("4MiB"), Ok(4 * MIB));
    assert_eq!(parse_chunk_size("16M"), Ok(16 * MIB));
    assert_eq!(parse_chunk_size("5 MiB"), Ok(5 * MIB));
    assert_eq!(parse_chunk_size("1048576"), Ok(MIB));
    assert_eq!(parse_chunk_size("1GiB"), Ok(1024 * MIB));
    assert!(parse_chunk_size("512KiB").unwrap_err().contains("smallest"));
    assert!(parse_chunk_size("8GiB").unwrap_err().contains("largest"));
    assert!(parse_chunk_size("lots").unwrap_err().contains("not a size"));
    assert!(parse_chunk_size("4 parsecs").is_err());
    assert!(parse_chunk_size("").is_err());
}

#[test]
fn learned_limits_only_go_down() {
    let l = Learned::default();
    assert_eq!(l.max("ghcr.io"), None);
    l.lower("ghcr.io", 4 * MIB);
    l.lower("ghcr.io", 8 * MIB);
    assert_eq!(l.max("ghcr.io"), Some(4 * MIB));
    assert_eq!(l.max("other"), None);
    assert!(!l.monolithic("gar"));
    l.set_monolithic("gar");
    assert!(l.monolithic("gar"));
    assert!(!l.monolithic("ghcr.io"));
}

#[test]
fn upload_status_ranges_are_read_without_trusting_0_0() {
    let at = |offset, ambiguous| Some(RegistryOffset { offset, ambiguous });
    // distribution: an empty session and a 1-byte one both say `0-0`.
    assert_eq!(registry_offset("0-0"), at(0, true));
    assert_eq!(registry_offset("0--1"), at(0, false));
    assert_eq!(registry_offset("0-1"), at(2, false));
    assert_eq!(registry_offset("0-16777215"), at(16 * MIB, false));
    assert_eq!(registry_offset("bytes=0-99"), at(100, false));
    assert_eq!(registry_offset("5-10"), None);
    assert_eq!(registry_offset("junk"), None);
    assert_eq!(registry_offset("0-x"), None);
    assert_eq!(registry_offset("0-18446744073709551615"), None);
}
