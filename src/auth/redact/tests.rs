//! Per-session sets, the fallback set, scopes and the merging of overlapping matches.

use super::*;
use crate::auth::Secret;

#[test]
fn registered_secrets_are_scrubbed() {
    let r = Redactor::new();
    r.register("short");
    r.register("hunter2-long-secret");
    r.register("hunter2-long");
    assert_eq!(r.scrub("pw=hunter2-long-secret!"), "pw=<redacted>!");
    assert_eq!(r.scrub("pw=hunter2-long"), "pw=<redacted>");
    assert_eq!(r.scrub("short words stay"), "short words stay");
    assert_eq!(r.len(), 2);
}

#[test]
fn overlapping_secrets_are_blanked_whole_across_sets() {
    let (a, b) = (Redactor::new(), Redactor::new());
    a.register("abcdef12");
    b.register("ef123456");
    // Leftmost-longest in one pass would leave "3456" of the second; merged: one run.
    assert_eq!(
        set::scrub_with(&[&a, &b], "x abcdef123456 y abcdef12 z"),
        "x <redacted> y <redacted> z"
    );
    assert_eq!(set::scrub_with(&[&b, &a], "abcdef123456"), "<redacted>");
    // Multi-byte text around a secret keeps its characters.
    assert_eq!(a.scrub("é abcdef12 ü"), "é <redacted> ü");
}

#[test]
fn two_redactors_do_not_share_secrets() {
    let (a, b) = (Redactor::new(), Redactor::new());
    a.register("secret-of-session-a");
    b.register("secret-of-session-b");
    let text = "secret-of-session-a secret-of-session-b";
    assert_eq!(a.scrub(text), "<redacted> secret-of-session-b");
    assert_eq!(b.scrub(text), "secret-of-session-a <redacted>");
    // A clone is the same set.
    let a2 = a.clone();
    a2.register("added-through-a-clone");
    assert!(a.same_as(&a2) && !a.same_as(&b));
    assert_eq!(a.scrub("added-through-a-clone"), "<redacted>");
}

#[test]
fn a_dropped_redactors_secrets_are_no_longer_scrubbed_process_wide() {
    let (a, b) = (Redactor::new(), Redactor::new());
    a.register("dropped-session-secret-1");
    b.register("living-session-secret-2");
    let text = "dropped-session-secret-1 living-session-secret-2";
    assert_eq!(scrub(text), "<redacted> <redacted>");
    let a2 = a.clone();
    drop(a);
    // A clone keeps it alive.
    assert_eq!(scrub(text), "<redacted> <redacted>");
    drop(a2);
    assert_eq!(scrub(text), "dropped-session-secret-1 <redacted>");
    drop(b);
    assert_eq!(scrub(text), text);
}

#[tokio::test]
async fn inside_a_scope_secrets_go_to_its_set_and_outside_to_the_fallback() {
    let job = Redactor::new();
    job.scope(async {
        register("registered-inside-the-job");
        let s = Secret::new("secret-made-inside-the-job");
        // Scrubbing inside the job: its set and the fallback.
        assert_eq!(
            scrub_here("registered-inside-the-job secret-made-inside-the-job"),
            "<redacted> <redacted>"
        );
        drop(s);
    })
    .await;
    assert_eq!(job.len(), 2);
    assert_eq!(
        FALLBACK.scrub("registered-inside-the-job"),
        "registered-inside-the-job"
    );

    register("registered-outside-any-job");
    assert_eq!(FALLBACK.scrub("registered-outside-any-job"), "<redacted>");
    assert_eq!(
        job.scrub("registered-outside-any-job"),
        "registered-outside-any-job"
    );
    // The fallback set is scrubbed in every job, and process-wide.
    let other = Redactor::new();
    other
        .scope(async {
            assert_eq!(scrub_here("registered-outside-any-job"), "<redacted>");
            // Another job's secret is not this job's.
            assert_eq!(
                scrub_here("registered-inside-the-job"),
                "registered-inside-the-job"
            );
        })
        .await;
    assert_eq!(scrub("registered-outside-any-job"), "<redacted>");
}

#[tokio::test]
async fn exposing_a_secret_puts_it_in_the_set_of_the_job_that_exposes_it() {
    // Made outside any job (a provider built up front), cached, used by two sessions' jobs.
    let shared = Secret::new("shared-cached-credential");
    let (a, b) = (Redactor::new(), Redactor::new());
    assert_eq!(a.scrub(shared.expose()), "shared-cached-credential");
    let s = shared.clone();
    b.scope(async move {
        let _on_the_wire = s.expose().to_string();
    })
    .await;
    assert_eq!(b.scrub("shared-cached-credential"), "<redacted>");
    assert_eq!(
        a.scrub("shared-cached-credential"),
        "shared-cached-credential"
    );
}

#[tokio::test]
async fn a_scope_is_carried_into_a_blocking_thread_and_lost_without_it() {
    let job = Redactor::new();
    job.scope(async {
        crate::job_context::spawn_blocking(|| register("read-on-a-blocking-thread"))
            .await
            .unwrap();
        // A plain thread has no scope: the secret goes to the fallback, never nowhere.
        std::thread::spawn(|| register("read-on-a-thread-of-its-own"))
            .join()
            .unwrap();
    })
    .await;
    assert_eq!(job.scrub("read-on-a-blocking-thread"), "<redacted>");
    assert_eq!(FALLBACK.scrub("read-on-a-thread-of-its-own"), "<redacted>");
    assert_eq!(
        FALLBACK.scrub("read-on-a-blocking-thread"),
        "read-on-a-blocking-thread"
    );
}

#[test]
fn no_cap_on_the_number_of_secrets() {
    // Far more than the 256 the set used to keep: the first and the last are scrubbed.
    let r = Redactor::new();
    for i in 0..2000 {
        r.register(&format!("many-secrets-{i:05}-x"));
    }
    assert_eq!(
        r.scrub("a many-secrets-00000-x b many-secrets-01999-x c"),
        "a <redacted> b <redacted> c"
    );
    // Through the free function, outside any job: the fallback keeps them all.
    for i in 0..2000 {
        register(&format!("fallback-secrets-{i:05}-x"));
    }
    assert_eq!(
        scrub("a fallback-secrets-00000-x b fallback-secrets-01999-x c"),
        "a <redacted> b <redacted> c"
    );
}
