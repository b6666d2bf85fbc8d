//! An HTTPS file server on 127.0.0.1 for `ADD https://…` tests: a throwaway CA and a
//! certificate for `IP:127.0.0.1` made by `openssl`, served by `openssl s_server -WWW`
//! (files under a directory, HTTP/1.0, body until close). Tools we did not write, so the TLS
//! side is not ocipush's own code checking itself.

use std::ffi::OsString;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::registry::free_port;
use super::require_tool;
use super::tools::{check, run_bounded};

/// A running `openssl s_server`; killed when dropped.
pub struct TlsServer {
    child: Child,
    port: u16,
    /// The CA certificate (PEM) that signed the server's certificate.
    pub ca_cert: PathBuf,
}

fn openssl(args: &[&str], dir: &Path) {
    let openssl = require_tool("openssl", "openssl");
    let mut a: Vec<OsString> = Vec::new();
    for x in args {
        let p = dir.join(x);
        // Arguments naming files of the work directory are passed as full paths.
        if x.ends_with(".pem") || x.ends_with(".key") || x.ends_with(".csr") || x.ends_with(".cnf")
        {
            a.push(p.into_os_string());
        } else {
            a.push(x.into());
        }
    }
    check(
        &format!("openssl {}", args.join(" ")),
        run_bounded(&openssl, &a, &[]),
    );
}

impl TlsServer {
    /// Serve the files under `root` over HTTPS; certificates go to `work`.
    pub fn start(root: &Path, work: &Path) -> TlsServer {
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=ocipush test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
            ],
            work,
        );
        openssl(
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
            ],
            work,
        );
        std::fs::write(
            work.join("leaf.cnf"),
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "leaf.cnf",
                "-out",
                "leaf.pem",
            ],
            work,
        );
        let port = free_port();
        let child = Command::new(require_tool("openssl", "openssl"))
            .current_dir(root)
            .args(["s_server", "-quiet", "-WWW", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(work.join("leaf.pem"))
            .arg("-key")
            .arg(work.join("leaf.key"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start openssl s_server");
        let server = TlsServer {
            child,
            port,
            ca_cert: work.join("ca.pem"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "openssl s_server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// `https://127.0.0.1:PORT/{rel}`.
    pub fn url(&self, rel: &str) -> String {
        format!("https://127.0.0.1:{}/{rel}", self.port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
