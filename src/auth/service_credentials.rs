//! Service credentials: what backend services present to the service-facing API, each
//! allowed some scopes. A service proves itself with a named token, of which the file holds
//! only the SHA-256 (so it can be shared with configuration management without handing out
//! the tokens), or, over gRPC TLS, with a client certificate from the configured CA whose
//! subject names the service.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use x509_cert::{
    Certificate,
    der::{
        Decode,
        asn1::{PrintableStringRef, Utf8StringRef},
        oid::{ObjectIdentifier, db::rfc4519::CN},
    },
    ext::pkix::{SubjectAltName, name::GeneralName},
};

use crate::text::hex;

/// The credential field of a service authenticated by its client certificate.
const CLIENT_CERTIFICATE: &str = "client-certificate";
/// `subjectAltName` (RFC 5280 §4.2.1.6).
const SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");

/// What a service may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Read the key set (`GetJwks`).
    Jwks,
    /// Introspect access tokens (`IntrospectToken`).
    Introspect,
    /// Follow revocations (`WatchRevocations`).
    Revocations,
    /// Read accounts (`ListUsers`, `GetUser`).
    UsersRead,
    /// Create, change and delete accounts (`CreateUser`, `UpdateUser`, `DeleteUser`).
    UsersWrite,
    /// Read the audit trail (`ListAuditEvents`).
    AuditRead,
}

impl Scope {
    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "jwks" => Some(Self::Jwks),
            "introspect" => Some(Self::Introspect),
            "revocations" => Some(Self::Revocations),
            "users:read" => Some(Self::UsersRead),
            "users:write" => Some(Self::UsersWrite),
            "audit:read" => Some(Self::AuditRead),
            _ => None,
        }
    }
}

/// One service's credential.
#[derive(Debug, Clone)]
pub struct ServiceCredential {
    /// The service's name, for logs.
    pub name: String,
    scopes: Vec<Scope>,
}

impl ServiceCredential {
    /// Whether the credential allows `scope`.
    #[must_use]
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// A client certificate the TLS handshake verified against the configured CA, reduced to
/// the names it gives its holder: the subject's common name and its DNS alternative names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    names: Vec<String>,
}

impl ClientCertificate {
    /// The names of a DER certificate; `None` when it does not decode.
    #[must_use]
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let certificate = Certificate::from_der(der).ok()?;
        let tbs = certificate.tbs_certificate;
        let mut names: Vec<String> = tbs
            .subject
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .filter(|attribute| attribute.oid == CN)
            .filter_map(|attribute| {
                let value = &attribute.value;
                Utf8StringRef::try_from(value)
                    .map(|s| s.as_str().to_owned())
                    .or_else(|_| PrintableStringRef::try_from(value).map(|s| s.as_str().to_owned()))
                    .ok()
            })
            .collect();
        let alternative_names = tbs
            .extensions
            .iter()
            .flatten()
            .filter(|extension| extension.extn_id == SUBJECT_ALT_NAME)
            .filter_map(|extension| SubjectAltName::from_der(extension.extn_value.as_bytes()).ok());
        for alternative in alternative_names {
            names.extend(alternative.0.into_iter().filter_map(|name| match name {
                GeneralName::DnsName(dns) => Some(dns.to_string()),
                _ => None,
            }));
        }
        Some(Self { names })
    }
}

/// Every service credential: tokens by their hex SHA-256, certificate holders by name.
#[derive(Debug, Clone, Default)]
pub struct ServiceCredentials {
    tokens: HashMap<String, ServiceCredential>,
    certificate_holders: HashMap<String, ServiceCredential>,
}

impl ServiceCredentials {
    /// Reads and parses the services file at `path` (`SERVICE_TOKENS_FILE`).
    ///
    /// # Errors
    /// When it cannot be read, or a line is wrong (the error says which).
    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))
    }

    /// Parses `SERVICE_TOKENS_FILE`: one service a line, `name scope[,scope…] credential`,
    /// where the credential is the token's SHA-256 in hex, or `client-certificate` for a
    /// service that presents a certificate naming it (common name or DNS name); blank lines
    /// and `#` comments are skipped.
    ///
    /// # Errors
    /// The line number and what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut credentials = Self::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |why: &str| format!("line {}: {why}", n + 1);
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, scopes, proof] = fields[..] else {
                return Err(fail(
                    "expected `name scope[,scope...] sha256-hex|client-certificate`",
                ));
            };
            let scopes = scopes
                .split(',')
                .map(|scope| {
                    Scope::parse(scope).ok_or_else(|| fail(&format!("unknown scope {scope:?}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let credential = ServiceCredential {
                name: name.to_owned(),
                scopes,
            };
            if proof == CLIENT_CERTIFICATE {
                if credentials
                    .certificate_holders
                    .insert(name.to_owned(), credential)
                    .is_some()
                {
                    return Err(fail("the same certificate name is listed twice"));
                }
                continue;
            }
            let hash = proof.to_ascii_lowercase();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(fail(
                    "the token must be given as its SHA-256 in hex (or `client-certificate`)",
                ));
            }
            if credentials.tokens.insert(hash, credential).is_some() {
                return Err(fail("the same token is listed twice"));
            }
        }
        Ok(credentials)
    }

    /// The credential a presented token is, if any.
    #[must_use]
    pub fn find_token(&self, token: &str) -> Option<&ServiceCredential> {
        self.tokens.get(&hex(&Sha256::digest(token.as_bytes())))
    }

    /// The credential of the service a verified client certificate names, if any.
    #[must_use]
    pub fn find_certificate_holder(
        &self,
        certificate: &ClientCertificate,
    ) -> Option<&ServiceCredential> {
        certificate
            .names
            .iter()
            .find_map(|name| self.certificate_holders.get(name))
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::{ClientCertificate, Scope, ServiceCredentials};
    use crate::text::hex;

    fn sha(token: &str) -> String {
        hex(&Sha256::digest(token.as_bytes()))
    }

    #[test]
    fn a_file_that_cannot_be_read_or_has_a_bad_line_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.txt");
        let unread = ServiceCredentials::load(&missing).unwrap_err().to_string();
        assert!(unread.contains("missing.txt"), "{unread}");
        let bad = dir.path().join("services.txt");
        std::fs::write(&bad, "billing introspect\n").unwrap();
        let refused = ServiceCredentials::load(&bad).unwrap_err().to_string();
        assert!(refused.contains("services.txt: line 1"), "{refused}");
    }

    #[test]
    fn tokens_are_found_by_hash_with_their_scopes() {
        let file = format!(
            "# services\n\nbilling introspect,revocations {}\nreader jwks {}\n",
            sha("billing-secret"),
            sha("reader-secret")
        );
        let credentials = ServiceCredentials::parse(&file).unwrap();
        let billing = credentials.find_token("billing-secret").unwrap();
        assert!(billing.allows(Scope::Introspect) && !billing.allows(Scope::Jwks));
        assert_eq!(
            credentials.find_token("reader-secret").unwrap().name,
            "reader"
        );
        assert!(credentials.find_token("guess").is_none());
        for bad in [
            "billing introspect",
            "x nope 00",
            "x jwks not-hex",
            "x jwks client-certificate\nx jwks client-certificate",
        ] {
            assert!(ServiceCredentials::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_certificate_names_its_service_by_common_name_or_dns_name() {
        let credentials =
            ServiceCredentials::parse("billing.internal introspect client-certificate\n").unwrap();
        let named = |common_name: &str, dns: Vec<String>| {
            let mut params = rcgen::CertificateParams::new(dns).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, common_name);
            let key = rcgen::KeyPair::generate().unwrap();
            let der = params.self_signed(&key).unwrap().der().to_vec();
            ClientCertificate::from_der(&der).unwrap()
        };
        let by_cn = named("billing.internal", vec![]);
        let by_dns = named("someone", vec!["billing.internal".into()]);
        let other = named("reader.internal", vec!["reader.internal".into()]);
        assert_eq!(
            credentials.find_certificate_holder(&by_cn).unwrap().name,
            "billing.internal"
        );
        assert!(credentials.find_certificate_holder(&by_dns).is_some());
        assert!(credentials.find_certificate_holder(&other).is_none());
        assert!(ClientCertificate::from_der(b"not a certificate").is_none());
        assert!(
            credentials.find_token("client-certificate").is_none(),
            "the keyword is no token"
        );
    }
}
