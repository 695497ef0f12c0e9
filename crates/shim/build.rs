//! Links berth-shim as a position-dependent executable. A PIE binary gets
//! its pointer tables (protobuf descriptors, vtables) relocated at load
//! time, which dirties ~2 MiB of private memory in every shim; at a fixed
//! address those pages stay clean and shared between all shims.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
