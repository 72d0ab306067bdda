//! weir-agent: the edge agent and the historian sink.

pub mod historian;
