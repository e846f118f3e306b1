//! Generates the tonic client from the service's own contract in `../proto`, with protox (no
//! system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../proto");
    let mut compiler = protox::Compiler::new(["../proto"])?;
    compiler.include_imports(true);
    compiler.open_files(["identity/v1/token_service.proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
