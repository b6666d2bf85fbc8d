//! Progress on stderr: one line per step when stderr is not a terminal (CI logs), bars for
//! uploads when it is. Never on stdout, which carries only the pushed image name.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ocipush::events::{Event, EventSink};

/// `--progress`: how events reach stderr (buildx's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ProgressMode {
    /// Bars on a terminal, else plain lines.
    #[default]
    Auto,
    /// Bars for uploads (stderr as a terminal).
    Tty,
    /// One line per event.
    Plain,
    /// One JSON object per line: `{"v": 1, "time": RFC 3339, "event": NAME, "data": {…}}`.
    Rawjson,
    /// Only warnings and errors (the same as `-q`).
    Quiet,
}

/// The version of the `rawjson` line format; bumped when a field changes meaning or goes.
pub const RAWJSON_VERSION: u32 = 1;

/// Build an event sink that reports to stderr as `mode` says.
pub fn reporter(mode: ProgressMode, several_platforms: bool) -> EventSink {
    match mode {
        ProgressMode::Quiet => {
            return Arc::new(|e| {
                if let Event::Warning(w) = e {
                    eprintln!("warning: {w}");
                }
            });
        }
        ProgressMode::Rawjson => return Arc::new(raw_json),
        _ => {}
    }
    let tty = match mode {
        ProgressMode::Tty => true,
        ProgressMode::Plain => false,
        _ => std::io::stderr().is_terminal(),
    };
    let multi = MultiProgress::with_draw_target(if tty {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let bars: Arc<Mutex<HashMap<String, ProgressBar>>> = Arc::default();
    Arc::new(move |e| {
        // `[linux/arm64] ` before a build's lines when several platforms are built.
        let tag = |platform: &str| {
            if several_platforms {
                format!("[{platform}] ")
            } else {
                String::new()
            }
        };
        // A finished upload's bar (by digest, or `layer-N` while built) goes away.
        let clear_bar = |key: &str| {
            let bar = bars.lock().ok().and_then(|mut b| b.remove(key));
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
        };
        let line = |s: String| {
            if tty {
                let _ = multi.println(s);
            } else {
                eprintln!("{s}");
            }
        };
        match e {
            Event::Warning(w) => line(format!("warning: {w}")),
            Event::BaseResolved {
                platform,
                image,
                digest,
            } => line(format!(
                "{}base {image} → {}",
                tag(&platform),
                digest.short()
            )),
            Event::LayerStarted {
                platform,
                line: l,
                step,
            } => line(format!(
                "{}building layer for Dockerfile:{l}: {step}",
                tag(&platform)
            )),
            Event::Downloaded {
                platform,
                line: l,
                url,
                digest,
                size,
                reused,
            } => line(format!(
                "{}{} {url} for Dockerfile:{l} ({}, {})",
                tag(&platform),
                if reused {
                    "reusing download of"
                } else {
                    "downloaded"
                },
                human(size),
                digest.short()
            )),
            Event::RunOutput {
                platform,
                line: l,
                text,
            } => line(format!("  {}Dockerfile:{l} | {text}", tag(&platform))),
            Event::LayerBuilt {
                platform,
                digest,
                size,
                ..
            } => line(format!(
                "{}built layer {} ({})",
                tag(&platform),
                digest.short(),
                human(size)
            )),
            Event::LayerStreaming { layer, sent } => {
                if tty && let Ok(mut b) = bars.lock() {
                    let bar = b.entry(format!("layer-{layer}")).or_insert_with(|| {
                        let bar = multi.add(ProgressBar::new_spinner());
                        bar.set_style(
                            ProgressStyle::with_template("{prefix} {bytes} {bytes_per_sec}")
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        bar.set_prefix(format!("upload layer {layer} while building"));
                        bar
                    });
                    bar.set_position(sent);
                }
            }
            Event::LayerStreamFailed { layer, error } => {
                clear_bar(&format!("layer-{layer}"));
                line(format!(
                    "uploading layer {layer} while it was built failed ({error}); it is pushed after the build"
                ));
            }
            Event::BlobExists { digest } => line(format!("exists {}", digest.short())),
            Event::BlobMounted { digest, from } => {
                line(format!("mounted {} from {from}", digest.short()))
            }
            Event::BlobUploading { digest, size } => {
                if tty {
                    let bar = multi.add(ProgressBar::new(size));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(format!("upload {}", digest.short()));
                    if let Ok(mut b) = bars.lock() {
                        b.insert(digest.to_string(), bar);
                    }
                } else {
                    line(format!("uploading {} ({})", digest.short(), human(size)));
                }
            }
            Event::BlobProgress { digest, sent } => {
                if let Ok(b) = bars.lock()
                    && let Some(bar) = b.get(digest.as_str())
                {
                    bar.set_position(sent);
                }
            }
            Event::BlobUploaded { digest } => {
                clear_bar(digest.as_str());
                line(format!("uploaded {}", digest.short()));
            }
            Event::BlobStreamed {
                layer,
                digest,
                size,
            } => {
                clear_bar(&format!("layer-{layer}"));
                line(format!(
                    "uploaded {} ({}) while it was built",
                    digest.short(),
                    human(size)
                ))
            }
            Event::Retrying {
                step,
                attempt,
                delay_ms,
                error,
            } => line(format!(
                "retrying {step} in {:.1} s (attempt {attempt} failed: {error})",
                delay_ms as f64 / 1000.0
            )),
            Event::Fallback { step, kind, detail } => line(format!("{step}: {detail} [{kind}]")),
            Event::ManifestPut { reference, digest } => {
                line(format!("pushed manifest {} as {reference}", digest.short()))
            }
            _ => {}
        }
    })
}

fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Now as rawjson writes it: RFC 3339 UTC with milliseconds.
pub(crate) fn rawjson_time() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.{:03}Z",
        ocipush::image::rfc3339(now.as_secs()).trim_end_matches('Z'),
        now.subsec_millis()
    )
}

/// One event as one JSON line on stderr.
fn raw_json(e: Event) {
    let mut line = serde_json::json!({
        "v": RAWJSON_VERSION,
        "time": rawjson_time(),
    });
    if let (Ok(serde_json::Value::Object(fields)), Some(obj)) =
        (serde_json::to_value(&e), line.as_object_mut())
    {
        obj.extend(fields);
    }
    eprintln!("{line}");
}

/// One line of the CLI's own (not a library [`Event`]: its final `error`, an
/// `interrupted`) in the rawjson format, so that every stderr line stays one JSON object.
pub(crate) fn raw_json_line(event: &str, data: serde_json::Value) {
    let line = serde_json::json!({
        "v": RAWJSON_VERSION,
        "time": rawjson_time(),
        "event": event,
        "data": data,
    });
    eprintln!("{line}");
}
