//! Compiles `pir.proto` and `issuer.proto` with protox (pure Rust): no system `protoc` needed.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    for (proto, descriptor) in [
        ("proto/pir/v1/pir.proto", "pir_v1_descriptor.bin"),
        (
            "proto/pir/issuer/v1/issuer.proto",
            "pir_issuer_v1_descriptor.bin",
        ),
    ] {
        println!("cargo:rerun-if-changed={proto}");
        let fds = protox::compile([proto], ["proto"])?;
        std::fs::write(out.join(descriptor), fds.encode_to_vec())?;
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .compile_fds(fds)?;
    }
    Ok(())
}
