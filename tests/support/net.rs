//! Ports on 127.0.0.1 for the servers a test starts, and waiting for them to listen.

use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A port nobody listens on now (the OS picks it; the test's server takes it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// Wait until something listens on 127.0.0.1:`port`; the test fails naming `what`
/// after `timeout`.
pub fn wait_for_port(port: u16, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} never listened on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
