//! Generates the jobwire.v1 messages and client stub from ../../protos with tonic-build,
//! using the protoc shipped in the protoc-bin-vendored crate unless $PROTOC is set.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../protos");
    let protos = [
        root.join("jobwire/v1/job.proto"),
        root.join("jobwire/v1/broker_service.proto"),
        root.join("jobwire/v1/error_reason.proto"),
        root.join("jobwire/v1/admin_service.proto"),
        root.join("jobwire/v1/schedule_service.proto"),
    ];
    if std::env::var_os("PROTOC").is_none() {
        // Build scripts run single-threaded, so changing our own environment is sound.
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    let well_known = protoc_bin_vendored::include_path()?;
    println!("cargo:rerun-if-env-changed=PROTOC");
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        .compile_protos(&protos, &[root, well_known])?;
    Ok(())
}
