//! Generates the inter-node service from `proto/` with a vendored `protoc`, so a fresh machine
//! needs no protobuf compiler installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure().bytes(".").compile_protos(&["proto/cluster.proto"], &["proto"])?;
    Ok(())
}
