//! Compiles `proto/` with protox (no system `protoc`) into tonic code, serde (proto3 JSON)
//! implementations, and a descriptor set.

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=migrations");

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files([
        "identity/v1/identity.proto",
        "identity/v1/token_service.proto",
    ])?;

    // The encoded bytes keep custom options (google.api.http) that the prost types would drop.
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor = compiler.encode_file_descriptor_set();
    fs::write(out_dir.join("identity_descriptor.bin"), &descriptor)?;

    // Well-known types come from pbjson-types, so timestamps have their proto3 JSON form.
    tonic_prost_build::configure()
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .build_client(true)
        .compile_fds(compiler.file_descriptor_set())?;

    // The JSON bridge speaks the seed's field names (`first_name`) and shows every field.
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor)?
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[".identity"])?;
    Ok(())
}
