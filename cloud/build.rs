//! Generates the artifact tracker's server and client from `proto/artifact_tracker.proto`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/artifact_tracker.proto");
    tonic_prost_build::configure().compile_protos(&["proto/artifact_tracker.proto"], &["proto"])?;
    Ok(())
}
