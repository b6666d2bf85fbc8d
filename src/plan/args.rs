//! Build arguments (`--build-arg`), and the automatic platform arguments BuildKit defines.

use std::collections::BTreeMap;

use crate::image::Platform;

/// `--build-arg KEY=VALUE` values (a `KEY` alone takes its value from the environment, as Docker does).
#[derive(Debug, Clone, Default)]
pub struct BuildArgs(pub BTreeMap<String, String>);

impl BuildArgs {
    /// Parse `KEY=VALUE` / `KEY` strings.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<BuildArgs, String> {
        let mut map = BTreeMap::new();
        for item in items {
            let (k, v) = match item.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => match std::env::var(item) {
                    Ok(v) => (item.to_string(), v),
                    Err(_) => continue,
                },
            };
            if k.is_empty() {
                return Err(format!("invalid --build-arg {item:?}: expected KEY=VALUE"));
            }
            map.insert(k, v);
        }
        Ok(BuildArgs(map))
    }
}

/// BuildKit's automatic platform args (`TARGETPLATFORM`, `TARGETOS`, `TARGETARCH`, `TARGETVARIANT`,
/// and the `BUILD*` ones) for a target and a build platform.
pub fn platform_args(target: &Platform, build: &Platform) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", build)] {
        m.insert(format!("{prefix}PLATFORM"), p.to_string());
        m.insert(format!("{prefix}OS"), p.os.clone());
        m.insert(format!("{prefix}ARCH"), p.architecture.clone());
        m.insert(
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        );
    }
    m
}
