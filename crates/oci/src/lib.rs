//! Pure functions from intent to OCI runtime spec. No I/O: everything here
//! is unit-testable and the same on every host.

pub mod attach;
pub mod container;
pub mod log_drops;
pub mod seccomp;
pub mod spec;
