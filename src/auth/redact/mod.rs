//! Secrets to blank out of text about to be written (log lines, RUN output, error messages):
//! a second line of defence behind redacted `Debug`, for what libraries log on their own at
//! trace level (request headers, signed AWS requests).
//!
//! Secrets are kept **per session**, not per process: each
//! [`Session`](crate::pipeline::Session) has a [`Redactor`] (a set of secrets), and its jobs
//! ([`build_and_push_platforms`](crate::pipeline::build_and_push_platforms),
//! [`copy_image`](crate::copy::copy_image), …) run with it as the current set (a tokio
//! task-local, carried into the blocking threads that read build secrets and run `RUN`).
//! [`register`] puts a secret in the current set, or, outside any job, in a process-level
//! fallback set. Every [`Secret`](super::Secret) registers itself when created and again when
//! exposed (put on the wire), so a credential cached by a client or provider that two sessions
//! share is in the set of each session that used it; callers register derived forms (the
//! base64 of `user:password` in a Basic header) and secrets that never become a `Secret` (AWS
//! keys from the environment, build secrets). No secret is ever lost: where no job is current
//! (a thread of its own, a task spawned without the scope) it goes to the fallback set, which
//! is never emptied.
//!
//! Scrubbing:
//! * [`scrub`] — process-wide (a log layer, a last error line): the fallback set and every
//!   live session's set. When a session (all its clones) is dropped, its secrets are forgotten:
//!   an embedder running builds for days keeps only the secrets of the sessions alive.
//! * inside a job (RUN output, retry events): the job's set and the fallback set, so one
//!   session's output never shows which text matched another session's secret.
//! * [`Redactor::scrub`] ([`Session::redactor`](crate::pipeline::Session::redactor)): exactly
//!   one set, for an embedder scrubbing its own logs of one session.
//!
//! [`redact_url`] is what a message may show of a URL a user wrote (`ADD https://…`): no
//! userinfo, and no value of a query parameter that looks like a credential.

mod set;
#[cfg(test)]
mod tests;
mod url;

use std::borrow::Cow;
use std::sync::LazyLock;

pub use self::set::Redactor;
pub use self::url::redact_url;

/// Shorter strings are not registered (they would blank out ordinary words).
const MIN_LEN: usize = 6;

/// What a secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Secrets registered outside any job; never emptied.
static FALLBACK: LazyLock<Redactor> = LazyLock::new(Redactor::unlisted);

/// Remember `secret` in the current job's set ([`Redactor::scope`]; a job of a
/// [`Session`](crate::pipeline::Session) runs in the session's set), or, outside any job, in the
/// process-level fallback set, so scrubbing removes it from text. Strings shorter than 6 bytes
/// are ignored.
pub fn register(secret: &str) {
    if secret.len() < MIN_LEN {
        return;
    }
    match crate::job_context::redactor() {
        Some(r) => r.register(secret),
        None => FALLBACK.register(secret),
    }
}

/// `text` with every secret of the fallback set and of every live [`Redactor`] (every live
/// session's) replaced by [`REDACTED`]: for text written outside any one session's work, such
/// as a process-wide log layer.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let live = Redactor::live();
    let mut sets: Vec<&Redactor> = Vec::with_capacity(live.len() + 1);
    sets.push(&FALLBACK);
    sets.extend(live.iter());
    set::scrub_with(&sets, text)
}

/// The set of the job this code runs in ([`crate::job_context`]), to scrub its output with.
#[derive(Clone, Debug)]
pub(crate) struct Scope(Option<Redactor>);

impl Scope {
    /// The current job's set, if any.
    pub(crate) fn current() -> Scope {
        Scope(crate::job_context::redactor())
    }

    /// `text` scrubbed of the job's secrets and the fallback set's; outside any job,
    /// process-wide ([`scrub`]).
    pub(crate) fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match &self.0 {
            Some(r) => set::scrub_with(&[&FALLBACK, r], text),
            None => scrub(text),
        }
    }
}

/// [`Scope::current`]`.scrub(text)`: scrubbed for the job this code runs in.
pub(crate) fn scrub_here(text: &str) -> Cow<'_, str> {
    Scope::current().scrub(text)
}
