//! gRPC over TLS (rustls): both services answer over it, plaintext is refused, and a client
//! certificate from the configured CA is a service credential that names its service.

use std::path::Path;

use identity::pb::{
    self, identity_service_client::IdentityServiceClient, token_service_client::TokenServiceClient,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use tonic::{
    Code, Request,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};

use crate::helpers::{Backend, STAFF_EMAIL, STAFF_PASSWORD, TestApp, service_tokens_file};

/// A certificate authority that signs server and client certificates.
struct Authority {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate and key (PEM) for `common_name`, valid for `dns_names` and 127.0.0.1.
    fn issue(&self, common_name: &str, dns_names: &[&str]) -> (String, String) {
        let names: Vec<String> = dns_names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        (certificate.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

const SERVICE_TOKEN: &str = "a-service-token-sent-over-tls";

/// An app serving gRPC on TLS, taking client certificates from `authority`; the services
/// file lets `billing.internal` introspect by certificate and `reader.internal` read keys.
async fn spawn(backend: Backend, authority: &Authority) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (certificate, key) = authority.issue("identity", &["localhost"]);
    let certificate = write(dir.path(), "server.pem", &certificate);
    let key = write(dir.path(), "server.key", &key);
    let ca = write(dir.path(), "ca.pem", &authority.pem);
    let services = service_tokens_file(
        dir.path(),
        &[
            ("billing.internal", "introspect", "client-certificate"),
            ("reader.internal", "jwks", "client-certificate"),
            ("tokened", "introspect", SERVICE_TOKEN),
        ],
    );
    let app = TestApp::spawn_with(
        backend,
        &[
            ("GRPC_TLS_CERT_FILE", &certificate),
            ("GRPC_TLS_KEY_FILE", &key),
            ("GRPC_TLS_CLIENT_CA_FILE", &ca),
            ("SERVICE_TOKENS_FILE", &services),
        ],
    )
    .await;
    (app, dir)
}

/// A TLS channel to the app that trusts `trusted` and presents `identity`, if any.
async fn tls_channel(
    app: &TestApp,
    trusted: &str,
    identity: Option<(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(trusted))
        .domain_name("localhost");
    if let Some((certificate, key)) = identity {
        tls = tls.identity(Identity::from_pem(certificate, key));
    }
    Channel::from_shared(format!("https://{}", app.grpc_addr))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

async fn introspect(channel: Channel, bearer: Option<&str>, token: &str) -> Result<bool, Code> {
    let mut request = Request::new(pb::IntrospectTokenRequest {
        token: token.into(),
    });
    if let Some(bearer) = bearer {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {bearer}").parse().unwrap());
    }
    TokenServiceClient::new(channel)
        .introspect_token(request)
        .await
        .map(|reply| reply.into_inner().active)
        .map_err(|status| status.code())
}

async fn both_services_answer_over_tls_and_plaintext_is_refused(backend: Backend) {
    let authority = Authority::new("test CA");
    let (app, _dir) = spawn(backend, &authority).await;

    let channel = tls_channel(&app, &authority.pem, None).await.unwrap();
    let login = IdentityServiceClient::new(channel.clone())
        .login(pb::LoginRequest {
            email: STAFF_EMAIL.into(),
            password: STAFF_PASSWORD.into(),
        })
        .await
        .expect("an end user signs in over TLS without a certificate")
        .into_inner();
    assert_eq!(
        introspect(channel, Some(SERVICE_TOKEN), &login.access).await,
        Ok(true),
        "a service token works over TLS"
    );

    let plaintext = IdentityServiceClient::new(app.channel_lazy())
        .login(pb::LoginRequest {
            email: STAFF_EMAIL.into(),
            password: STAFF_PASSWORD.into(),
        })
        .await;
    assert!(plaintext.is_err(), "plaintext gRPC is refused");
    let stranger = Authority::new("another CA");
    assert!(
        tls_channel(&app, &stranger.pem, None).await.is_err(),
        "a client that trusts another CA does not connect"
    );
}

async fn a_client_certificate_from_the_ca_is_a_service_credential(backend: Backend) {
    let authority = Authority::new("test CA");
    let (app, _dir) = spawn(backend, &authority).await;
    let login = {
        let channel = tls_channel(&app, &authority.pem, None).await.unwrap();
        IdentityServiceClient::new(channel)
            .login(pb::LoginRequest {
                email: STAFF_EMAIL.into(),
                password: STAFF_PASSWORD.into(),
            })
            .await
            .unwrap()
            .into_inner()
    };
    let as_holder = |common_name: &str, dns: &[&str]| {
        let identity = authority.issue(common_name, dns);
        let (app, pem) = (&app, authority.pem.clone());
        async move { tls_channel(app, &pem, Some(identity)).await.unwrap() }
    };

    let billing = as_holder("billing.internal", &[]).await;
    assert_eq!(introspect(billing, None, &login.access).await, Ok(true));
    let by_dns_name = as_holder("some host", &["billing.internal"]).await;
    assert_eq!(introspect(by_dns_name, None, &login.access).await, Ok(true));
    let reader = as_holder("reader.internal", &[]).await;
    assert_eq!(
        introspect(reader, None, &login.access).await,
        Err(Code::PermissionDenied)
    );
    let unlisted = as_holder("stranger.internal", &[]).await;
    assert_eq!(
        introspect(unlisted, Some(&login.access), &login.access).await,
        Err(Code::Unauthenticated),
        "an unlisted certificate with an end-user token is no service"
    );
    let anonymous = tls_channel(&app, &authority.pem, None).await.unwrap();
    assert_eq!(
        introspect(anonymous, None, &login.access).await,
        Err(Code::Unauthenticated)
    );

    // A certificate another CA signed does not get through the handshake.
    let forger = Authority::new("forger CA");
    let forged = tls_channel(
        &app,
        &authority.pem,
        Some(forger.issue("billing.internal", &[])),
    );
    let refused = match forged.await {
        Err(_) => true,
        Ok(channel) => introspect(channel, None, &login.access).await.is_err(),
    };
    assert!(refused, "a certificate from another CA is refused");
}

crate::on_both_backends!(
    both_services_answer_over_tls_and_plaintext_is_refused,
    a_client_certificate_from_the_ca_is_a_service_credential,
);
