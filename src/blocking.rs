//! The blocking threads a job starts (layer writers, RUN sandboxes, reading base layers), counted
//! so that a cancelled job returns only once they have stopped: their temporary files are gone
//! by then, and the runtime is never shut down under a thread still driving its futures
//! (a timer used there after shutdown panics).
//!
//! [`scope`] sets the count for a job's task; [`spawn`] is `tokio::task::spawn_blocking` that
//! counts the thread while it runs and carries the job's other task-locals onto it: the event
//! sink (`events::emit`) and the secrets' set (`auth::redact`). Outside any job it only spawns.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

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

tokio::task_local! {
    static WORK: Work;
}

/// Run `job` with `work` counting the blocking threads it [`spawn`]s.
pub(crate) async fn scope<F: Future>(work: Work, job: F) -> F::Output {
    WORK.scope(work, job).await
}

/// `spawn_blocking(f)`, counted in the job's [`Work`] while `f` runs.
pub(crate) fn spawn<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let running = WORK.try_with(Work::enter).ok();
    let sink = crate::events::current_sink();
    let redaction = crate::auth::redact::Scope::current();
    tokio::task::spawn_blocking(move || {
        let _running = running;
        redaction.enter(|| match sink {
            Some(sink) => crate::events::in_job_blocking(&sink, f),
            None => f(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_every_counted_thread() {
        let work = Work::default();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        // (The handle is returned in a tuple: awaited later, outside the scope.)
        let (handle,) = scope(work.clone(), async move { (spawn(move || rx.recv()),) }).await;
        assert_eq!(work.0.running.load(Ordering::Acquire), 1);
        // Still running: idle() must not resolve yet.
        let idle = work.idle();
        tokio::pin!(idle);
        assert!(futures_util::poll!(idle.as_mut()).is_pending());
        tx.send(()).unwrap();
        idle.await;
        assert!(handle.await.unwrap().is_ok());
        // Outside a scope nothing is counted.
        spawn(|| ()).await.unwrap();
        assert_eq!(work.0.running.load(Ordering::Acquire), 0);
    }
}
