//! Registries that answer an expired credential with 403 instead of 401. Amazon ECR does: a
//! token older than 12 hours — typically an old `docker login` saved in config.json — or a
//! token of another region gets `403 Forbidden` with the OCI error
//! `{"errors":[{"code":"DENIED","message":"Your authorization token has expired. Reauthenticate and try again."}]}`
//! (<https://docs.aws.amazon.com/AmazonECR/latest/userguide/common-errors-docker.html>;
//! awslabs/amazon-ecr-credential-helper#27). The request loop refreshes the credential once on
//! such an answer ([`says_expired`]); any other 403 is given back to the caller whole
//! ([`rebuild`]), its body already read.

use bytes::Bytes;
use reqwest::ResponseBuilderExt as _;
use reqwest::header::HeaderMap;
use reqwest::{Response, StatusCode, Version};
use url::Url;

use super::error::ErrorDetail;

/// Marks a 403 answered to a credential already past its own known end (an ECR token whose
/// `expiration` is over): expired, even when the answer cannot say so (a HEAD has no body).
#[derive(Debug, Clone, Copy)]
pub(crate) struct KnownExpired;

/// Whether a refusal says the credential expired (ECR's "authorization token has expired",
/// a token server's `invalid_token` "expired").
pub(crate) fn says_expired(detail: &ErrorDetail) -> bool {
    let said = |text: &str| {
        let t = text.to_ascii_lowercase();
        t.contains("token has expired")
            || t.contains("token is expired")
            || t.contains("expired token")
    };
    detail.errors.iter().any(|e| said(&e.message)) || detail.body.as_deref().is_some_and(said)
}

/// Whether a refusal names the permission the identity lacks (ECR's DENIED "User: … is not
/// authorized to perform: ecr:X on resource: …"): a real denial, which a fresh credential of
/// the same identity does not cure.
pub(crate) fn names_a_permission(detail: &ErrorDetail) -> bool {
    let said = |text: &str| {
        text.to_ascii_lowercase()
            .contains("not authorized to perform")
    };
    detail.errors.iter().any(|e| said(&e.message)) || detail.body.as_deref().is_some_and(said)
}

/// A response with this status, version, headers, URL and (already read) body.
pub(crate) fn rebuild(
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    url: Url,
    body: Bytes,
) -> Response {
    let mut r = http::Response::new(body);
    *r.status_mut() = status;
    *r.version_mut() = version;
    *r.headers_mut() = headers;
    // The body is whole now: its old framing headers no longer apply.
    r.headers_mut().remove(reqwest::header::TRANSFER_ENCODING);
    r.headers_mut().remove(reqwest::header::CONTENT_ENCODING);
    let (mut parts, body) = r.into_parts();
    let with_url = http::response::Builder::new().url(url);
    if let Some(ext) = with_url.extensions_ref() {
        parts.extensions.extend(ext.clone());
    }
    Response::from(http::Response::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_expiry_is_recognised() {
        let ecr = ErrorDetail::new(
            403,
            br#"{"errors":[{"code":"DENIED","message":"Your authorization token has expired. Reauthenticate and try again."}]}"#,
        );
        assert!(says_expired(&ecr));
        let denied = ErrorDetail::new(
            403,
            br#"{"errors":[{"code":"DENIED","message":"User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: ecr:PutImage on resource: arn:aws:ecr:us-east-1:1:repository/x"}]}"#,
        );
        assert!(!says_expired(&denied));
        assert!(names_a_permission(&denied) && !names_a_permission(&ecr));
        assert!(says_expired(&ErrorDetail::new(403, b"Token has expired")));
        assert!(!says_expired(&ErrorDetail::new(403, b"")));
    }

    #[tokio::test]
    async fn rebuilt_responses_keep_status_headers_url_and_body() {
        let mut h = HeaderMap::new();
        h.insert("x-test", "1".parse().unwrap());
        let url = Url::parse("https://r.example/v2/x/manifests/y").unwrap();
        let r = rebuild(
            StatusCode::FORBIDDEN,
            Version::HTTP_11,
            h,
            url.clone(),
            Bytes::from_static(b"no"),
        );
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.url(), &url);
        assert_eq!(r.headers()["x-test"], "1");
        assert_eq!(&r.bytes().await.unwrap()[..], b"no");
    }
}
