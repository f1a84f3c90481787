//! Compiles the .proto files with protox (pure Rust, no system `protoc`) and writes the encoded
//! descriptor set next to the generated code, for server reflection.
use prost::Message;

const PROTOS: &[&str] = &["cps/v1/cps.proto", "dmp/v1/dmp.proto", "twiin/v1/twiin.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(PROTOS, ["."])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptor_set.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        // RPCs whose issue has not landed answer UNIMPLEMENTED through the default stubs.
        .generate_default_stubs(true)
        // Documents travel as `bytes::Bytes`, so the gateway hands the received buffers to the
        // MTOM writer without copying them.
        .bytes(".dmp.v1")
        .compile_fds(fds)?;
    Ok(())
}
