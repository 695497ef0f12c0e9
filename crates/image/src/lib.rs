//! Images: pulls from registries (berth's own registry client) and imports from archives, the content
//! store where blobs land verified, the unpacking of layer tarballs into
//! snapshot directories in overlay form, and the index of image names.

pub mod auth_file;
pub mod content;
mod error;
pub mod export;
pub mod import;
pub mod index;
pub mod lease;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
mod registry;
pub mod unpack;

pub use error::{Error, RegistryErrorKind, Result};
pub use registry::{parse_manifest_answer, CertsError, RegistryError, TlsFailure};
