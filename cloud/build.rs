//! Generates the cloud's servers and clients from `proto/`: the artifact tracker and the Vizier
//! registry.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/artifact_tracker.proto");
    println!("cargo:rerun-if-changed=proto/vizier_registry.proto");
    tonic_prost_build::configure().compile_protos(
        &["proto/artifact_tracker.proto", "proto/vizier_registry.proto"],
        &["proto"],
    )?;
    Ok(())
}
