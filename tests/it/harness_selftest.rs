//! Proves the harness works with tools we did not write, independent of ocipush.

use crate::common::registry::{RegistryServer, count};

#[test]
fn registry_starts_and_logs_requests() {
    let reg = RegistryServer::start();
    let mark = reg.log_mark();
    let body = http_get(&reg.addr(), "/v2/", None);
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let log = reg.access_log_since(mark);
    assert_eq!(count(&log, "GET", "/v2/"), 1, "{log:#?}");
    assert_eq!(log[0].user_agent, "selftest");
}

#[test]
fn registry_with_auth_rejects_anonymous() {
    let reg = RegistryServer::start_with_auth("alice", "s3cret");
    let anon = http_get(&reg.addr(), "/v2/", None);
    assert!(anon.starts_with("HTTP/1.1 401"), "{anon}");
    let ok = http_get(&reg.addr(), "/v2/", Some("YWxpY2U6czNjcmV0"));
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let log = reg.access_log();
    let statuses: Vec<u16> = log.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [401, 200], "{log:#?}");
}

fn http_get(addr: &str, path: &str, basic: Option<&str>) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = basic
        .map(|b| format!("Authorization: Basic {b}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: selftest\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
