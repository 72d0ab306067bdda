//! Free TCP ports on 127.0.0.1, so tests never collide on a fixed port.

use std::net::TcpListener;

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it and
/// the listener is closed again; the caller binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn is_listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}
