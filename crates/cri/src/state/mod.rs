//! What berthd knows about pods and containers: records persisted on disk
//! (checkpoints, reloaded at start) and the live objects built on them.
//!
//! Each object has its own locks: `record` (a std mutex, held only to read
//! or change fields, never across an await) and `op` (a tokio mutex that
//! serialises the lifecycle operations of that one object, so a slow shim
//! only delays calls on its own container).

mod container;
mod lifecycle;
mod registry;
mod sandbox;

pub use container::{Container, ContainerRecord, ContainerState, ExitInfo};
pub use registry::Registry;
pub use sandbox::{Sandbox, SandboxRecord, SandboxState};

use crate::error::{Error, Result};

/// A new random 64-hex-digit id, like every other runtime's.
pub fn new_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).map_err(Error::io("read /dev/urandom"))?;
    Ok(hex::encode(bytes))
}

/// Nanoseconds since the epoch, the CRI's timestamp unit.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// CRI messages are kept in records in their own wire format (hex): the
/// protobuf encoding is the CRI's versioned, forward-compatible form, so a
/// newer berth reads configs an older one stored.
pub(crate) mod proto_hex {
    use prost::Message;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Message, S: Serializer>(msg: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(msg.encode_to_vec()))
    }

    pub fn deserialize<'de, T: Message + Default, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(text).map_err(serde::de::Error::custom)?;
        T::decode(bytes.as_slice()).map_err(serde::de::Error::custom)
    }
}
