//! berth's admin API: what operators need that the CRI does not carry.
//! berthd serves it on the CRI socket, beside the RuntimeService and
//! ImageService; berthctl is its client.

pub mod chunks;

pub mod admin {
    pub mod v1 {
        tonic::include_proto!("berth.admin.v1");
    }
}
