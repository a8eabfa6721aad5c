//! gRPC server reflection, in both versions clients speak: `grpc.reflection.v1` (grpcurl,
//! Postman) and `grpc.reflection.v1alpha` (Python grpcio's stock client, older tools). Each
//! listener advertises only the services it serves.

use tonic_reflection::server::{v1, v1alpha};

use crate::error::ServerError;

/// Reflection services (v1, v1alpha) that list `services` and themselves.
pub(crate) fn services(
    services: &[&str],
) -> Result<
    (
        v1::ServerReflectionServer<impl v1::ServerReflection>,
        v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>,
    ),
    ServerError,
> {
    let builder = || {
        let mut b = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pir_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection");
        for name in services {
            b = b.with_service_name(*name);
        }
        b
    };
    let error = |e: tonic_reflection::server::Error| {
        ServerError::Internal(format!("reflection service: {e}"))
    };
    // Each version registers its own descriptor; the other's is added so that both names
    // listed resolve.
    let v1 = builder()
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(error)?;
    let v1alpha = builder()
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(error)?;
    Ok((v1, v1alpha))
}
