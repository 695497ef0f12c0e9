//! Images: the content store where blobs land verified, and the unpacking
//! of layer tarballs into snapshot directories in overlay form.
//!
//! Still to come (issue 3): the registry client, the image index, the CRI
//! ImageService and `berthctl images`.

pub mod content;
mod error;
pub mod index;
pub mod pull;
pub mod unpack;

pub use error::{Error, RegistryErrorKind, Result};
