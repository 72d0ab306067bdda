//! Projects of an organization: their HTTP API ([`routes`]). Members are
//! in `members`, project-scoped routes take `scope::ProjectScope`.

pub mod routes;

pub use routes::{CreateProject, Project, UpdateProject};
