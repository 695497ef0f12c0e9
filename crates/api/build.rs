// Generates the admin API's messages, client and server from the proto
// files in the top-level proto/ (protoc comes from hack/setup.sh, as for the CRI bindings).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../../proto/berth/admin/v1/admin.proto";
    println!("cargo:rerun-if-changed={proto}");
    // Containers (berthctl cp), in a file of its own.
    let containers = "../../proto/berth/admin/v1/containers.proto";
    println!("cargo:rerun-if-changed={containers}");
    tonic_prost_build::configure().compile_protos(&[proto, containers], &["../../proto"])?;
    Ok(())
}
