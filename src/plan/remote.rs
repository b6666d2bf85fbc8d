//! Which COPY/ADD sources BuildKit reads from the network rather than from the build context
//! (frontend/dockerfile/dockerfile2llb/convert_copy.go `isHTTPSource`, `isGitSource`, and
//! dfgitutil's `ParseGitRef`): ocipush refuses both, naming the line.

/// A source that is not a path in the build context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Remote {
    /// An `http://` or `https://` URL (not a git repository).
    Http,
    /// A git repository: `git://`, `ssh://`, `user@host:path`, or an HTTP(S) URL whose path
    /// ends in `.git`.
    Git,
}

/// What kind of remote source `src` is, `None` for a path in the build context.
pub(crate) fn remote_kind(src: &str) -> Option<Remote> {
    if src.starts_with("./") || src.starts_with("../") {
        return None;
    }
    if is_scp_like(src) {
        return Some(Remote::Git);
    }
    let proto_len = src.bytes().take_while(u8::is_ascii_alphanumeric).count();
    let scheme = src.get(..proto_len).unwrap_or("").to_ascii_lowercase();
    if proto_len == 0 || !src.get(proto_len..).is_some_and(|r| r.starts_with("://")) {
        return None;
    }
    match scheme.as_str() {
        "git" | "ssh" => Some(Remote::Git),
        "http" | "https" => {
            let git = url::Url::parse(src).is_ok_and(|u| u.path().ends_with(".git"));
            // BuildKit's isHTTPSource is case-sensitive about the scheme.
            if git {
                Some(Remote::Git)
            } else if src.starts_with("http://") || src.starts_with("https://") {
                Some(Remote::Http)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// sshutil's `^([a-zA-Z0-9-_]+)@([a-zA-Z0-9-.]+):(.*?)(?:\?(.*?))?(?:#(.*))?$`.
fn is_scp_like(src: &str) -> bool {
    let Some((user, rest)) = src.split_once('@') else {
        return false;
    };
    let Some((host, _)) = rest.split_once(':') else {
        return false;
    };
    !user.is_empty()
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(remote_kind("https://x.org/a.tgz"), Some(Remote::Http));
        assert_eq!(remote_kind("http://x.org/"), Some(Remote::Http));
        assert_eq!(remote_kind("https://github.com/o/r.git"), Some(Remote::Git));
        assert_eq!(
            remote_kind("https://github.com/o/r.git#v1:sub"),
            Some(Remote::Git)
        );
        assert_eq!(remote_kind("git://host/r"), Some(Remote::Git));
        assert_eq!(remote_kind("ssh://git@host/r"), Some(Remote::Git));
        assert_eq!(remote_kind("git@github.com:o/r.git"), Some(Remote::Git));
        for local in [
            "a.txt",
            "./x",
            "dir/file@2x.png",
            "github.com/o/r",
            "ftp://x/y",
            "c:/x",
            "user@host",
            "HTTP://x/y",
        ] {
            assert_eq!(remote_kind(local), None, "{local}");
        }
    }
}
