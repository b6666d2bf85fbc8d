//! What a job (one build, push or copy an embedder starts) carries to every task and thread
//! it runs on: one task-local [`JobContext`] holding
//!
//! - its **event sink**, for the layers that have no sink of their own (the registry client's
//!   retries, fallbacks deep in the fetcher): `events::emit`;
//! - its **secrets' set** (a [`Session`](crate::pipeline::Session)'s [`Redactor`]), where
//!   secrets it meets are registered and from which its output is scrubbed: `auth::redact`;
//! - its count of **blocking threads** ([`Work`]), so that a cancelled job returns only once
//!   they have stopped: their temporary files are gone by then, and the runtime is never shut
//!   down under a thread still driving its futures (a timer used there after shutdown panics).
//!
//! Each part is set where it is known ([`with_events`], [`Redactor::scope`], [`with_work`]),
//! nested scopes keeping the parts they do not set. [`spawn_blocking`] is
//! `tokio::task::spawn_blocking` that carries the whole context onto the thread and counts it
//! while it runs; clippy refuses the plain one in this crate (`clippy.toml`), so no thread of a
//! job can lose its sink, its secrets or its place in the count. Two jobs in one process (two
//! builds an IDE runs) each see only their own context.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

use crate::auth::redact::Redactor;
use crate::events::EventSink;

/// The job this code runs for; empty outside any job.
#[derive(Clone, Default)]
pub(crate) struct JobContext {
    events: Option<EventSink>,
    redactor: Option<Redactor>,
    work: Option<Work>,
}

tokio::task_local! {
    static CURRENT: JobContext;
}

impl JobContext {
    /// The context of the job running on this task or thread (empty outside any job).
    fn current() -> JobContext {
        CURRENT.try_with(JobContext::clone).unwrap_or_default()
    }

    /// Run `fut` in this context.
    async fn run<F: Future>(self, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }

    /// Run `f` (on a thread of its own) in this context.
    fn enter<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }
}

/// `f` of the current job's context, or `None` outside any job (no clone).
fn with_current<R>(f: impl FnOnce(&JobContext) -> R) -> Option<R> {
    CURRENT.try_with(f).ok()
}

/// The current job's event sink, if any.
pub(crate) fn events() -> Option<EventSink> {
    with_current(|c| c.events.clone()).flatten()
}

/// The current job's secrets' set, if any.
pub(crate) fn redactor() -> Option<Redactor> {
    with_current(|c| c.redactor.clone()).flatten()
}

/// Run `fut` with `events` as its job's sink, the rest of the context kept.
pub(crate) fn with_events<F: Future>(
    events: &EventSink,
    fut: F,
) -> impl Future<Output = F::Output> {
    let events = events.clone();
    scoped(fut, move |c| c.events = Some(events))
}

/// Run `fut` with `redactor` as its job's secrets' set, the rest of the context kept.
pub(crate) fn with_redactor<F: Future>(
    redactor: &Redactor,
    fut: F,
) -> impl Future<Output = F::Output> {
    let redactor = redactor.clone();
    scoped(fut, move |c| c.redactor = Some(redactor))
}

/// Run `fut` with `work` counting the blocking threads it starts, the rest of the context kept.
pub(crate) fn with_work<F: Future>(work: &Work, fut: F) -> impl Future<Output = F::Output> {
    let work = work.clone();
    scoped(fut, move |c| c.work = Some(work))
}

/// `fut` in the context current when it is first polled, changed by `change`. A job's
/// future is large (every state of a build), so it is boxed at once: the wrappers nest
/// around a pointer, not around copies of it on the stack of whoever polls them.
fn scoped<F: Future>(
    fut: F,
    change: impl FnOnce(&mut JobContext),
) -> impl Future<Output = F::Output> {
    let fut = Box::pin(fut);
    async move {
        let mut c = JobContext::current();
        change(&mut c);
        c.run(fut).await
    }
}

/// `tokio::task::spawn_blocking(f)` with the current job's context on the thread, counted in
/// the job's [`Work`] while `f` runs.
#[allow(clippy::disallowed_methods)] // the one place the plain spawn is used
pub(crate) fn spawn_blocking<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let context = JobContext::current();
    let running = context.work.as_ref().map(Work::enter);
    tokio::task::spawn_blocking(move || {
        let _running = running;
        context.enter(f)
    })
}

/// Blocking threads running for one job.
#[derive(Clone, Default)]
pub(crate) struct Work(Arc<Inner>);

#[derive(Default)]
struct Inner {
    running: AtomicUsize,
    idle: Notify,
}

/// One running thread; dropped (also on a panic) when it ends.
struct Running(Arc<Inner>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Work {
    fn enter(&self) -> Running {
        self.0.running.fetch_add(1, Ordering::AcqRel);
        Running(self.0.clone())
    }

    /// Resolves once no thread of the job is running.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a thread ending in between still wakes us.
            notified.as_mut().enable();
            if self.0.running.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_every_counted_thread() {
        let work = Work::default();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        // (The handle is returned in a tuple: awaited later, outside the scope.)
        let (handle,) = with_work(&work, async move { (spawn_blocking(move || rx.recv()),) }).await;
        assert_eq!(work.0.running.load(Ordering::Acquire), 1);
        // Still running: idle() must not resolve yet.
        let idle = work.idle();
        tokio::pin!(idle);
        assert!(futures_util::poll!(idle.as_mut()).is_pending());
        tx.send(()).unwrap();
        idle.await;
        assert!(handle.await.unwrap().is_ok());
        // Outside a scope nothing is counted.
        spawn_blocking(|| ()).await.unwrap();
        assert_eq!(work.0.running.load(Ordering::Acquire), 0);
    }

    /// Nested scopes keep what they do not set, and a blocking thread sees all of it.
    #[tokio::test]
    async fn nested_scopes_keep_the_other_parts_and_reach_blocking_threads() {
        let redactor = Redactor::default();
        let (sink, _rx) = crate::events::channel();
        let work = Work::default();
        let seen = with_redactor(
            &redactor,
            with_work(
                &work,
                with_events(&sink, async {
                    spawn_blocking(|| {
                        with_current(|c| (c.events.is_some(), c.redactor.clone(), c.work.is_some()))
                    })
                    .await
                    .unwrap()
                }),
            ),
        )
        .await;
        let (events, r, counted) = seen.expect("a context on the thread");
        assert!(events && counted);
        assert!(r.unwrap().same_as(&redactor));
        // Outside, nothing.
        assert!(with_current(|_| ()).is_none());
        assert!(JobContext::current().events.is_none());
    }
}
