//! The tonic server: the identity service with reflection (v1 and v1alpha, for every grpcurl),
//! `grpc.health.v1` tied to database reachability, and message size limits.

use std::{future::Future, sync::Arc, time::Duration};

use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::{ServingStatus, server::HealthReporter};

use super::{IdentityApi, TokenApi};
use crate::{
    config::GrpcTlsConfig,
    net::ConnectionLimit,
    pb,
    pb::{
        identity_service_server::IdentityServiceServer, token_service_server::TokenServiceServer,
    },
    services::Services,
    telemetry::GrpcTelemetryLayer,
};

/// Largest request or response message.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// How often readiness is re-checked against the database when nothing said it changed.
const READINESS_INTERVAL: Duration = Duration::from_secs(5);
/// Clients reconnect at least this often, so long-lived channels spread over new replicas.
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);

/// Serves gRPC on `listener` until `shutdown` resolves, then drains in-flight calls.
///
/// # Errors
/// When reflection cannot be built or the server fails.
pub async fn serve(
    listener: TcpListener,
    api: IdentityApi,
    token_api: TokenApi,
    services: Services,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let identity = IdentityServiceServer::new(api)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let tokens = TokenServiceServer::new(token_api)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    // Known before the first call is accepted, so no probe sees "service not registered".
    reporter
        .set_service_status("liveness", ServingStatus::Serving)
        .await;
    check_readiness(&reporter, &services).await;
    let telemetry =
        GrpcTelemetryLayer::new(services.metrics.clone(), services.config.request_timeout);
    let config = Arc::clone(&services.config);
    let readiness = tokio::spawn(track_readiness(reporter.clone(), services)).abort_handle();
    let stop_readiness = readiness.clone();
    let drained = async move {
        shutdown.await;
        stop_readiness.abort();
        // Stop advertising before the listener closes, so balancers move on first.
        set_all(&reporter, ServingStatus::NotServing).await;
        reporter
            .set_service_status("liveness", ServingStatus::NotServing)
            .await;
    };
    let mut builder = Server::builder();
    if let Some(tls) = &config.grpc_tls {
        builder = builder.tls_config(tls_config(tls))?;
    }
    let outcome = builder
        .max_connection_age(MAX_CONNECTION_AGE)
        .max_concurrent_streams(Some(config.grpc_max_concurrent_streams))
        .http2_keepalive_interval(Some(config.grpc_keepalive_interval))
        .http2_keepalive_timeout(Some(config.grpc_keepalive_timeout))
        .layer(telemetry)
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(identity)
        .add_service(tokens)
        // Without it a reply's headers, message and trailers wait on delayed ACKs (40 ms).
        .serve_with_incoming_shutdown(
            ConnectionLimit::new(config.max_connections).incoming(listener),
            drained,
        )
        .await;
    readiness.abort();
    outcome.map_err(Into::into)
}

/// rustls settings for the listener: the server's certificate, and client certificates from
/// the CA asked for but not required (end users connect without one).
fn tls_config(tls: &GrpcTlsConfig) -> ServerTlsConfig {
    let identity = Identity::from_pem(&tls.certificate_pem, tls.private_key_pem.expose_secret());
    let config = ServerTlsConfig::new().identity(identity);
    match &tls.client_ca_pem {
        Some(ca) => config
            .client_ca_root(Certificate::from_pem(ca))
            .client_auth_optional(true),
        None => config,
    }
}

/// Checks the TLS settings before anything is served, so a bad certificate or key fails
/// start-up with the setting's name.
///
/// # Errors
/// When the certificate, key or CA do not load.
pub fn check_tls(tls: &GrpcTlsConfig) -> anyhow::Result<()> {
    Server::builder()
        .tls_config(tls_config(tls))
        .map(drop)
        .map_err(|e| {
            anyhow::anyhow!(
                "GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE or GRPC_TLS_CLIENT_CA_FILE: {e}: {}",
                std::error::Error::source(&e)
                    .map(ToString::to_string)
                    .unwrap_or_default()
            )
        })
}

/// Reflection over our contract, health, and the `google.rpc` error details we send.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}

async fn check_readiness(reporter: &HealthReporter, services: &Services) {
    let status = if services.is_ready().await {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    set_all(reporter, status).await;
}

/// Re-checks readiness periodically, and at once when the pool finds the database gone or
/// back.
async fn track_readiness(reporter: HealthReporter, services: Services) {
    let mut changes = services.readiness_changes();
    loop {
        tokio::select! {
            () = tokio::time::sleep(READINESS_INTERVAL) => {}
            changed = changes.changed() => if changed.is_err() {
                tokio::time::sleep(READINESS_INTERVAL).await;
            },
        }
        check_readiness(&reporter, &services).await;
    }
}

/// Sets the server, the identity service and Kubernetes' `readiness` probe name to `status`;
/// `liveness` stays serving while the process runs, except while draining.
async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    reporter.set_service_status("readiness", status).await;
    reporter
        .set_service_status(
            <IdentityServiceServer<IdentityApi> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
    reporter
        .set_service_status(
            <TokenServiceServer<TokenApi> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
}
