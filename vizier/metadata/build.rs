//! Generates the metadata API (server and client) from `proto/metadata.proto`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/metadata.proto");
    tonic_prost_build::configure().compile_protos(&["proto/metadata.proto"], &["proto"])?;
    Ok(())
}
