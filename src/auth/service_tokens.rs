//! Service credentials: named tokens that backend services present to the service-facing
//! API, each allowed some scopes. The file holds only their SHA-256, so it can be shared
//! with configuration management without handing out the tokens.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::keyed_hash::hex;

/// What a service token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Read the key set (`GetJwks`).
    Jwks,
    /// Introspect access tokens (`IntrospectToken`).
    Introspect,
    /// Follow revocations (`WatchRevocations`).
    Revocations,
}

impl Scope {
    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "jwks" => Some(Self::Jwks),
            "introspect" => Some(Self::Introspect),
            "revocations" => Some(Self::Revocations),
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

/// Every service token, by the hex SHA-256 of the token.
#[derive(Debug, Clone, Default)]
pub struct ServiceTokens(HashMap<String, ServiceCredential>);

impl ServiceTokens {
    /// Parses `SERVICE_TOKENS_FILE`: one service a line, `name scope[,scope…] sha256-hex`;
    /// blank lines and `#` comments are skipped.
    ///
    /// # Errors
    /// The line number and what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |why: &str| format!("line {}: {why}", n + 1);
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, scopes, hash] = fields[..] else {
                return Err(fail("expected `name scope[,scope...] sha256-hex`"));
            };
            let scopes = scopes
                .split(',')
                .map(|scope| {
                    Scope::parse(scope).ok_or_else(|| fail(&format!("unknown scope {scope:?}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let hash = hash.to_ascii_lowercase();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(fail("the token must be given as its SHA-256 in hex"));
            }
            let credential = ServiceCredential {
                name: name.to_owned(),
                scopes,
            };
            if tokens.insert(hash, credential).is_some() {
                return Err(fail("the same token is listed twice"));
            }
        }
        Ok(Self(tokens))
    }

    /// The credential a presented token is, if any.
    #[must_use]
    pub fn find(&self, token: &str) -> Option<&ServiceCredential> {
        self.0.get(&hex(&Sha256::digest(token.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::{Scope, ServiceTokens};

    fn sha(token: &str) -> String {
        super::hex(&Sha256::digest(token.as_bytes()))
    }

    #[test]
    fn tokens_are_found_by_hash_with_their_scopes() {
        let file = format!(
            "# services\n\nbilling introspect,revocations {}\nreader jwks {}\n",
            sha("billing-secret"),
            sha("reader-secret")
        );
        let tokens = ServiceTokens::parse(&file).unwrap();
        let billing = tokens.find("billing-secret").unwrap();
        assert!(billing.allows(Scope::Introspect) && !billing.allows(Scope::Jwks));
        assert_eq!(tokens.find("reader-secret").unwrap().name, "reader");
        assert!(tokens.find("guess").is_none());
        for bad in ["billing introspect", "x nope 00", "x jwks not-hex"] {
            assert!(ServiceTokens::parse(bad).is_err(), "{bad:?}");
        }
    }
}
