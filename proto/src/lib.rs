//! Generated gRPC types of the suite, and the descriptor set that feeds server reflection.

/// `cps.v1`: the CPS signing relay.
pub mod cps {
    pub mod v1 {
        tonic::include_proto!("cps.v1");
    }
}

/// `dmp.v1`: the DMP gateway.
pub mod dmp {
    pub mod v1 {
        tonic::include_proto!("dmp.v1");
    }
}

/// `twiin.v1`: the Twiin authorization server.
pub mod twiin {
    pub mod v1 {
        tonic::include_proto!("twiin.v1");
    }
}

/// Encoded `FileDescriptorSet` of every .proto in this crate (with their imports), for
/// `tonic_reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor_set.bin"));
