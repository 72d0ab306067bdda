//! The historian's integration tests, one binary (one link of the crate):
//! each module is a scenario against a real Mosquitto and a real PostgreSQL
//! at 127.0.0.1:5432; `support` starts them and holds the readings sent and
//! expected back.

mod exactly_once;
mod gaps;
mod malformed;
mod password_file;
mod pg_terminate;
mod schema;
mod support;
