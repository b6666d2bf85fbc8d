//! Where credentials may go. An `Authorization` header is for the origin (scheme, host, port)
//! whose challenge it answers, and nowhere else:
//!
//! * a request to another origin — an upload `Location` or a blob download pointing at a
//!   storage host (S3, a CDN; many registries do this: distribution's `storage.redirect`,
//!   <https://distribution.github.io/distribution/about/configuration/#redirect>) — is sent
//!   without it, as Go's `net/http` and reqwest do for cross-host redirects;
//! * a `Location` (or redirect) that downgrades `https` to `http` is refused: the upload would
//!   travel in clear and its session URL (often a capability) with it;
//! * a Bearer token realm must be `https` unless the registry itself is plain HTTP or insecure:
//!   the token request carries the user's password or refresh token, and OAuth 2.0 requires
//!   TLS for the token endpoint (RFC 6749 §3.2, <https://www.rfc-editor.org/rfc/rfc6749#section-3.2>;
//!   the distribution token protocol is built on it,
//!   <https://distribution.github.io/distribution/spec/auth/token/>).
//!
//! An insecure registry (`--insecure`, registries.conf `insecure = true`) is reached over TLS
//! first, without verifying the certificate, and over plain HTTP only when TLS fails, as
//! containers-registries.conf(5) defines `insecure` and containers/image implements it
//! (`docker/docker_client.go`, `detectPropertiesHelper`: ping `https`, then `http` when
//! `InsecureSkipVerify`).

use url::Url;

/// Whether `a` and `b` have the same origin: scheme, host and port (the scheme's default
/// port when none is written), as RFC 6454 defines it.
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
}

/// `scheme://host[:port]` of `u`, for messages (never a path or query: those may be signed).
pub(crate) fn origin_label(u: &Url) -> String {
    let mut s = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
    if let Some(p) = u.port() {
        s.push_str(&format!(":{p}"));
    }
    s
}

/// What may be sent to `target` by a client talking to the registry at `registry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The registry's own origin: credentials go along.
    Registry,
    /// Another origin: sent without `Authorization`.
    Foreign,
    /// `https` registry, `http` target: refused.
    Downgrade,
}

/// Classify a request URL against the registry's (effective) base URL.
pub(crate) fn classify(registry: &Url, target: &Url) -> Target {
    if registry.scheme() == "https" && target.scheme() != "https" {
        Target::Downgrade
    } else if same_origin(registry, target) {
        Target::Registry
    } else {
        Target::Foreign
    }
}

/// Whether a token realm may be used for a registry reached with `registry_scheme`
/// (`http`/`https`), `insecure` when registries.conf or `--insecure` allows plain HTTP for it.
pub(crate) fn realm_allowed(realm: &Url, registry_scheme: &str, insecure: bool) -> bool {
    match realm.scheme() {
        "https" => true,
        "http" => registry_scheme == "http" || insecure,
        _ => false,
    }
}

/// The redirect policy of the registry client: reqwest's default (at most 10 hops; reqwest
/// drops `Authorization` when the scheme, host or port changes), refusing a hop from `https`
/// to `http`.
pub(crate) fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt.url().scheme() == "http"
            && attempt
                .previous()
                .last()
                .is_some_and(|p| p.scheme() == "https");
        if downgrade {
            let to = origin_label(attempt.url());
            attempt.error(format!(
                "the registry redirected from https to plain http ({to}); refused"
            ))
        } else if attempt.previous().len() >= 10 {
            attempt.error("more than 10 redirects")
        } else {
            attempt.follow()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn origins() {
        let reg = u("https://registry.example/v2/app/");
        assert_eq!(
            classify(
                &reg,
                &u("https://registry.example:443/v2/app/blobs/uploads/x")
            ),
            Target::Registry
        );
        assert_eq!(
            classify(&reg, &u("https://REGISTRY.example/v2/x")),
            Target::Registry
        );
        assert_eq!(
            classify(&reg, &u("https://storage.example/bucket/x?sig=1")),
            Target::Foreign
        );
        assert_eq!(
            classify(&reg, &u("https://registry.example:8443/v2/x")),
            Target::Foreign
        );
        assert_eq!(
            classify(&reg, &u("http://registry.example/v2/x")),
            Target::Downgrade
        );
        assert_eq!(
            classify(&reg, &u("http://storage.example/x")),
            Target::Downgrade
        );
        let plain = u("http://127.0.0.1:5000/v2/app/");
        assert_eq!(
            classify(&plain, &u("http://127.0.0.1:5000/v2/app/blobs/uploads/1")),
            Target::Registry
        );
        assert_eq!(
            classify(&plain, &u("http://127.0.0.2:5000/v2/app/blobs/uploads/1")),
            Target::Foreign
        );
        // http → https is an upgrade, and another origin.
        assert_eq!(
            classify(&plain, &u("https://127.0.0.1:5000/v2/x")),
            Target::Foreign
        );
        assert_eq!(
            origin_label(&u("https://u:p@h.example:8443/a?sig=x")),
            "https://h.example:8443"
        );
    }

    #[test]
    fn realms() {
        let https = u("https://auth.example/token");
        let http = u("http://auth.example/token");
        assert!(realm_allowed(&https, "https", false));
        assert!(realm_allowed(&https, "http", false));
        assert!(!realm_allowed(&http, "https", false));
        assert!(realm_allowed(&http, "https", true));
        assert!(realm_allowed(&http, "http", false));
        assert!(!realm_allowed(&u("ftp://auth.example/t"), "http", true));
    }
}
