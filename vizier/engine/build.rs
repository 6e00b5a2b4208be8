//! Generates the broker API (server and client) from `proto/vizier.proto`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/vizier.proto");
    tonic_prost_build::configure().compile_protos(&["proto/vizier.proto"], &["proto"])?;
    Ok(())
}
