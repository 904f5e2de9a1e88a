//! The accept loop survives running out of file descriptors (EMFILE): the
//! binary, started with a tiny descriptor limit, keeps serving once
//! connections close, instead of dying or spinning.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request on a new connection; the status line, or None.
fn request(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.lines().next().map(str::to_string)
}

#[test]
fn accept_loop_survives_emfile() {
    // A backend that answers 200 to anything.
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_port = backend.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in backend.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0
                        || s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("snigate.toml");
    std::fs::write(
        &config,
        format!(
            "[runtime]\nworkers = 1\n[[listener]]\nname = \"main\"\nbind = [\"127.0.0.1:{port}\"]\nmode = \"http\"\ndefault_upstream = \"be\"\n\
             [[upstream]]\nname = \"be\"\nservers = [\"127.0.0.1:{backend_port}\"]\n"
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_snigate");
    let child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -n 64 && exec {bin} run -c {}",
            config.display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Killed(child);

    let deadline = Instant::now() + Duration::from_secs(20);
    while request(port).as_deref() != Some("HTTP/1.1 200 OK") {
        assert!(Instant::now() < deadline, "snigate did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Far more idle connections than descriptors: the kernel queues the rest.
    let hogs: Vec<TcpStream> = (0..150)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert!(hogs.len() > 64, "could not open connections");
    // While exhausted, a request cannot be served, but the process lives on.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "snigate died on EMFILE"
    );
    drop(hogs);
    // Descriptors come back: requests are served again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if request(port).as_deref() == Some("HTTP/1.1 200 OK") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "snigate does not serve again after EMFILE"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(child.0.try_wait().unwrap().is_none());
}
