//! What Weir's tests share, written once: a private Mosquitto per test, a
//! fresh PostgreSQL database per test (or a server of its own to stop and
//! restart), free ports, waits that end at a deadline, and the workspace's
//! binaries as child processes.
//!
//! Used only as a dev-dependency (and by the e2e harness, which is test code
//! itself). Every helper fails loudly, naming what is missing and how to get
//! it: a test that needs a real broker or database never skips silently.

pub mod bins;
pub mod mosquitto;
pub mod ports;
pub mod postgres;
pub mod postgres_own;
pub mod wait;

pub use bins::{bin, Proc};
pub use mosquitto::Mosquitto;
pub use ports::free_port;
pub use postgres::TestDb;
pub use postgres_own::{PgServer, StopMode};
pub use wait::{try_wait_until, wait_until, wait_until_blocking, TimedOut};
