//! Compiles `proto/` with protox (no system `protoc`) into tonic code and a descriptor set.

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=migrations");

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(["identity/v1/identity.proto"])?;

    // The encoded bytes keep custom options (google.api.http) that the prost types would drop.
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("identity_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
