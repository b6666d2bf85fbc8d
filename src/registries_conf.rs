//! A subset of containers-registries.conf(5), version 2: `[[registry]]` tables with `prefix`,
//! `location`, `insecure` and `blocked`, and the resolution of an image reference to the
//! [`Endpoint`] actually contacted (host, rewritten repository, HTTP or HTTPS).
//!
//! Other keys and tables (`unqualified-search-registries`, `mirror`, `short-name-mode`, v1
//! `[registries.*]` tables) are accepted and ignored. Drop-in `registries.conf.d` files are not
//! read.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::reference::{DOCKER_HUB, Reference};

/// The host contacted for Docker Hub.
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";
/// The environment variable naming a registries.conf to use instead of the default ones.
pub const ENV_VAR: &str = "CONTAINERS_REGISTRIES_CONF";
/// The system-wide registries.conf.
pub const SYSTEM_PATH: &str = "/etc/containers/registries.conf";

/// Why registries.conf could not be used, or refuses a reference.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistriesConfError {
    /// The file could not be read.
    #[error(
        "cannot read registries.conf {path}: {source}; check the path (--registries-conf / ${ENV_VAR})"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a known key has the wrong type.
    #[error(
        "cannot parse registries.conf {path}: {message}; fix the file (see containers-registries.conf(5))"
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A `[[registry]]` table has neither `prefix` nor `location`, or a bad one.
    #[error("invalid [[registry]] entry #{index} in registries.conf {path}: {message}")]
    Entry {
        /// The file.
        path: PathBuf,
        /// The entry, from 1.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// The reference matches a `blocked = true` entry.
    #[error(
        "pulling from or pushing to {name} is blocked by registries.conf {path} (entry with prefix {prefix:?}); \
         remove `blocked = true` there to allow it"
    )]
    Blocked {
        /// The reference's `registry/repository`.
        name: String,
        /// The matching prefix.
        prefix: String,
        /// The file.
        path: PathBuf,
    },
}

/// HTTP or HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// TLS.
    Https,
    /// Plain HTTP (loopback hosts).
    Http,
}

impl Scheme {
    /// `https` or `http`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a reference's repository actually lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The registry as the user named it, after normalisation (`docker.io`, `localhost:5000`).
    pub logical_registry: String,
    /// The `host[:port]` contacted.
    pub host: String,
    /// The repository on that host (rewritten by a `location`).
    pub repository: String,
    /// HTTP or HTTPS: the scheme tried first (HTTPS unless the host is a loopback one).
    pub scheme: Scheme,
    /// `insecure = true` / `--insecure`: an unverified TLS certificate is accepted, and plain
    /// HTTP is used when TLS fails (containers-registries.conf(5)). TLS is tried first.
    pub insecure: bool,
}

impl Endpoint {
    /// The endpoint of `r` with no registries.conf: same host (Docker Hub's API host for
    /// `docker.io`), plain HTTP for loopback hosts; `insecure` allows HTTP or unverified TLS.
    pub fn direct(r: &Reference, insecure: bool) -> Endpoint {
        let host = api_host(&r.registry);
        Endpoint {
            logical_registry: r.registry.clone(),
            scheme: scheme_for(&host),
            host,
            repository: r.repository.clone(),
            insecure,
        }
    }

    /// `host/repository`, for messages.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.host, self.repository)
    }
}

/// One `[[registry]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    /// The `registry[/repository]` prefix it applies to (`*.example.com` matches subdomains).
    pub prefix: String,
    /// What replaces the prefix (the prefix itself when not given).
    pub location: String,
    /// Allow plain HTTP or an unverified TLS certificate for this location (TLS is tried first).
    pub insecure: bool,
    /// Refuse references matching the prefix.
    pub blocked: bool,
}

/// A loaded registries.conf (possibly none: [`RegistriesConf::default`]).
#[derive(Debug, Clone, Default)]
pub struct RegistriesConf {
    entries: Vec<RegistryEntry>,
    path: Option<PathBuf>,
    insecure: bool,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    registry: Vec<RawEntry>,
    #[serde(flatten)]
    other: toml::Table,
}

#[derive(Deserialize)]
struct RawEntry {
    prefix: Option<String>,
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(flatten)]
    other: toml::Table,
}

impl RegistriesConf {
    /// Parse registries.conf text; `path` is only for messages.
    pub fn parse(text: &str, path: &Path) -> Result<RegistriesConf, RegistriesConfError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| RegistriesConfError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        for key in raw.other.keys() {
            tracing::debug!(file = %path.display(), key, "registries.conf: ignoring unsupported key");
        }
        let mut entries = Vec::with_capacity(raw.registry.len());
        for (i, e) in raw.registry.into_iter().enumerate() {
            let bad = |message: &str| RegistriesConfError::Entry {
                path: path.to_path_buf(),
                index: i + 1,
                message: message.to_string(),
            };
            for key in e.other.keys() {
                tracing::debug!(file = %path.display(), entry = i + 1, key, "registries.conf: ignoring unsupported key (mirrors are not used)");
            }
            let location = e.location.map(|l| l.trim_end_matches('/').to_string());
            let prefix = match (e.prefix, &location) {
                (Some(p), _) => p.trim_end_matches('/').to_string(),
                (None, Some(l)) => l.clone(),
                (None, None) => return Err(bad("it has neither `prefix` nor `location`")),
            };
            if prefix.is_empty() {
                return Err(bad("`prefix` is empty"));
            }
            if prefix.contains("://") || location.as_deref().is_some_and(|l| l.contains("://")) {
                return Err(bad(
                    "`prefix` and `location` must not have a scheme (write `host/path`)",
                ));
            }
            if prefix.starts_with("*.")
                && location.is_some()
                && location.as_deref() != Some(prefix.as_str())
            {
                return Err(bad("a wildcard `prefix` cannot have a `location`"));
            }
            let location = location.unwrap_or_else(|| prefix.clone());
            entries.push(RegistryEntry {
                prefix,
                location,
                insecure: e.insecure,
                blocked: e.blocked,
            });
        }
        Ok(RegistriesConf {
            entries,
            path: Some(path.to_path_buf()),
            insecure: false,
        })
    }

    /// Read and parse one file.
    pub fn load_file(path: &Path) -> Result<RegistriesConf, RegistriesConfError> {
        let text = std::fs::read_to_string(path).map_err(|source| RegistriesConfError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        RegistriesConf::parse(&text, path)
    }

    /// Load the first of: `explicit` (`--registries-conf`, must exist), `$CONTAINERS_REGISTRIES_CONF`
    /// (must exist), `$HOME/.config/containers/registries.conf`, `/etc/containers/registries.conf`;
    /// none at all is an empty configuration.
    pub fn load(explicit: Option<&Path>) -> Result<RegistriesConf, RegistriesConfError> {
        Self::load_with(explicit, |k| std::env::var_os(k), Path::new(SYSTEM_PATH))
    }

    /// [`RegistriesConf::load`] with the environment and the system file given (for tests).
    pub fn load_with(
        explicit: Option<&Path>,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
        system: &Path,
    ) -> Result<RegistriesConf, RegistriesConfError> {
        if let Some(p) = explicit {
            return Self::load_file(p);
        }
        if let Some(p) = env(ENV_VAR).filter(|p| !p.is_empty()) {
            return Self::load_file(Path::new(&p));
        }
        let mut candidates = Vec::new();
        if let Some(home) = env("HOME").filter(|h| !h.is_empty()) {
            candidates.push(PathBuf::from(home).join(".config/containers/registries.conf"));
        }
        candidates.push(system.to_path_buf());
        for p in candidates {
            if p.is_file() {
                tracing::debug!(file = %p.display(), "using registries.conf");
                return Self::load_file(&p);
            }
        }
        Ok(RegistriesConf::default())
    }

    /// Treat every registry as insecure (plain HTTP or unverified TLS allowed): `--insecure`.
    pub fn with_insecure(mut self, insecure: bool) -> RegistriesConf {
        self.insecure = insecure;
        self
    }

    /// The entries, in file order.
    pub fn entries(&self) -> &[RegistryEntry] {
        &self.entries
    }

    /// The entry whose prefix is the longest match of `registry/repository` (whole components).
    pub fn find(&self, r: &Reference) -> Option<&RegistryEntry> {
        let name = r.name();
        self.entries
            .iter()
            .filter(|e| prefix_matches(&e.prefix, &name, &r.registry))
            .max_by_key(|e| {
                if e.prefix.starts_with("*.") {
                    0
                } else {
                    e.prefix.len()
                }
            })
    }

    /// Where `r` lives: the matching entry's `location` replaces its prefix; `docker.io` is
    /// contacted at `registry-1.docker.io`; plain HTTP for loopback hosts; `insecure = true`
    /// entries and `--insecure` allow HTTP or unverified TLS. A `blocked = true` match is an error.
    pub fn resolve(&self, r: &Reference) -> Result<Endpoint, RegistriesConfError> {
        let Some(entry) = self.find(r) else {
            return Ok(Endpoint::direct(r, self.insecure));
        };
        if entry.blocked {
            return Err(RegistriesConfError::Blocked {
                name: r.name(),
                prefix: entry.prefix.clone(),
                path: self.path.clone().unwrap_or_default(),
            });
        }
        let name = r.name();
        let rewritten = if entry.prefix.starts_with("*.") {
            name
        } else {
            format!("{}{}", entry.location, &name[entry.prefix.len()..])
        };
        let (host, repository) = match rewritten.split_once('/') {
            Some((h, rest)) => (h.to_string(), rest.to_string()),
            None => (rewritten.clone(), String::new()),
        };
        let repository = if host == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let host = api_host(&host);
        Ok(Endpoint {
            logical_registry: r.registry.clone(),
            scheme: scheme_for(&host),
            host,
            repository,
            insecure: self.insecure || entry.insecure,
        })
    }
}

/// Plain HTTP for loopback hosts (as Docker treats 127.0.0.0/8 and `localhost`), HTTPS for
/// every other.
fn scheme_for(host: &str) -> Scheme {
    if is_loopback(host) {
        Scheme::Http
    } else {
        Scheme::Https
    }
}

fn api_host(registry: &str) -> String {
    if registry == DOCKER_HUB || registry == "index.docker.io" {
        DOCKER_HUB_HOST.to_string()
    } else {
        registry.to_string()
    }
}

fn prefix_matches(prefix: &str, name: &str, registry: &str) -> bool {
    if let Some(domain) = prefix.strip_prefix("*.") {
        let host = registry.split(':').next().unwrap_or(registry);
        return host.len() > domain.len() + 1
            && host.ends_with(domain)
            && host[..host.len() - domain.len()].ends_with('.');
    }
    name == prefix || (name.starts_with(prefix) && name.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// Whether `host[:port]` is `localhost`, in 127.0.0.0/8, or `::1`.
pub fn is_loopback(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else if host_port.matches(':').count() > 1 {
        host_port // bare IPv6
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    const CONF: &str = r#"
unqualified-search-registries = ["docker.io"]
short-name-mode = "enforcing"

[[registry]]
prefix = "example.com/foo"
location = "mirror.internal:5000/bar"
insecure = true

[[registry]]
prefix = "example.com"
location = "other.example.net"

[[registry]]
location = "plain.example.org"
insecure = true

[[registry]]
prefix = "blocked.example.com/secret"
blocked = true

[[registry]]
prefix = "*.wild.example"
insecure = true

[[registry]]
prefix = "docker.io/library"
location = "hub-mirror.example/dockerhub"
[[registry.mirror]]
location = "ignored.example"
"#;

    fn conf() -> RegistriesConf {
        RegistriesConf::parse(CONF, Path::new("test.conf")).unwrap()
    }

    #[test]
    fn longest_prefix_whole_components() {
        let c = conf();
        let e = c.resolve(&r("example.com/foo/app:1")).unwrap();
        assert_eq!(
            (e.host.as_str(), e.repository.as_str(), e.scheme, e.insecure),
            ("mirror.internal:5000", "bar/app", Scheme::Https, true)
        );
        assert_eq!(e.logical_registry, "example.com");
        let e = c.resolve(&r("example.com/foobar/app")).unwrap();
        assert_eq!(
            (e.host.as_str(), e.repository.as_str(), e.scheme),
            ("other.example.net", "foobar/app", Scheme::Https)
        );
        let e = c.resolve(&r("example.com/foo")).unwrap();
        assert_eq!(
            (e.host.as_str(), e.repository.as_str()),
            ("mirror.internal:5000", "bar")
        );
        let e = c.resolve(&r("plain.example.org/x")).unwrap();
        assert_eq!(
            (e.host.as_str(), e.scheme, e.insecure),
            ("plain.example.org", Scheme::Https, true)
        );
        let e = c.resolve(&r("a.wild.example/x")).unwrap();
        assert_eq!(
            (e.host.as_str(), e.scheme, e.insecure),
            ("a.wild.example", Scheme::Https, true)
        );
        let e = c.resolve(&r("wild.example/x")).unwrap();
        assert_eq!((e.scheme, e.insecure), (Scheme::Https, false));
        let e = c.resolve(&r("alpine")).unwrap();
        assert_eq!(
            (e.host.as_str(), e.repository.as_str()),
            ("hub-mirror.example", "dockerhub/alpine")
        );
        let e = c.resolve(&r("user/app")).unwrap();
        assert_eq!(
            (e.host.as_str(), e.repository.as_str()),
            ("registry-1.docker.io", "user/app")
        );
    }

    #[test]
    fn blocked_is_refused() {
        let err = conf()
            .resolve(&r("blocked.example.com/secret/x"))
            .unwrap_err();
        assert!(matches!(err, RegistriesConfError::Blocked { .. }));
        assert!(
            err.to_string().contains("blocked.example.com/secret/x"),
            "{err}"
        );
        assert!(conf().resolve(&r("blocked.example.com/secretive")).is_ok());
    }

    #[test]
    fn loopback_and_insecure_defaults() {
        let c = RegistriesConf::default();
        for (s, scheme) in [
            ("localhost:5000/a", Scheme::Http),
            ("localhost/a", Scheme::Http),
            ("127.0.0.1:5000/a", Scheme::Http),
            ("127.1.2.3/a", Scheme::Http),
            ("[::1]:5000/a", Scheme::Http),
            ("example.com/a", Scheme::Https),
            ("10.0.0.1:5000/a", Scheme::Https),
        ] {
            assert_eq!(c.resolve(&r(s)).unwrap().scheme, scheme, "{s}");
        }
        let c = RegistriesConf::default().with_insecure(true);
        let e = c.resolve(&r("example.com/a")).unwrap();
        assert_eq!((e.scheme, e.insecure), (Scheme::Https, true));
    }

    #[test]
    fn entry_errors_and_system_file() {
        let err =
            RegistriesConf::parse("[[registry]]\ninsecure = true\n", Path::new("x")).unwrap_err();
        assert!(
            matches!(err, RegistriesConfError::Entry { index: 1, .. }),
            "{err}"
        );
        let err = RegistriesConf::parse("[[registry]\n", Path::new("x")).unwrap_err();
        assert!(matches!(err, RegistriesConfError::Parse { .. }), "{err}");
        // A v1 file and the distribution's default file parse fine.
        RegistriesConf::parse(
            "[registries.search]\nregistries = ['docker.io']\n",
            Path::new("v1"),
        )
        .unwrap();
        if Path::new(SYSTEM_PATH).is_file() {
            RegistriesConf::load_file(Path::new(SYSTEM_PATH)).unwrap();
        }
    }

    #[test]
    fn load_order() {
        let dir = tempfile::tempdir().unwrap();
        let explicit = dir.path().join("explicit.conf");
        std::fs::write(&explicit, "[[registry]]\nlocation = \"explicit.example\"\n").unwrap();
        let env_file = dir.path().join("env.conf");
        std::fs::write(&env_file, "[[registry]]\nlocation = \"env.example\"\n").unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".config/containers")).unwrap();
        std::fs::write(
            home.join(".config/containers/registries.conf"),
            "[[registry]]\nlocation = \"home.example\"\n",
        )
        .unwrap();
        let none = dir.path().join("none");
        let env_all = |k: &str| match k {
            ENV_VAR => Some(env_file.clone().into_os_string()),
            "HOME" => Some(home.clone().into_os_string()),
            _ => None,
        };
        let first = |c: RegistriesConf| c.entries()[0].location.clone();
        assert_eq!(
            first(RegistriesConf::load_with(Some(&explicit), env_all, &none).unwrap()),
            "explicit.example"
        );
        assert_eq!(
            first(RegistriesConf::load_with(None, env_all, &none).unwrap()),
            "env.example"
        );
        let env_home = |k: &str| (k == "HOME").then(|| home.clone().into_os_string());
        assert_eq!(
            first(RegistriesConf::load_with(None, env_home, &none).unwrap()),
            "home.example"
        );
        let c = RegistriesConf::load_with(None, |_| None, &none).unwrap();
        assert!(c.entries().is_empty());
        assert!(RegistriesConf::load_with(Some(&none), |_| None, &none).is_err());
    }
}
