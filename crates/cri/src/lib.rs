//! The CRI v1 services berthd serves to the kubelet and crictl.
//!
//! Exec, Attach and PortForward answer with a URL of berth's streaming
//! server (`berth-streaming`). CheckpointContainer answers `Unimplemented`
//! with the name of the RPC, so a client learns exactly what is missing
//! instead of getting a wrong answer.

pub mod admin;
pub mod cdi;
pub mod error;
pub mod image;
pub mod runtime;
pub(crate) mod seams;
pub mod shim_client;
pub(crate) mod state;
#[cfg(test)]
mod testing;

pub use admin::AdminContainers;
pub use admin::AdminImages;
pub use image::ImageServer;
pub use runtime::{RuntimeInfo, RuntimeServer};

/// The error for an RPC berth does not serve yet.
pub(crate) fn not_yet(rpc: &str) -> tonic::Status {
    tonic::Status::unimplemented(format!("{rpc} is not implemented by berthd yet"))
}
