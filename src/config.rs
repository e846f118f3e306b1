//! Settings from the environment (and `.env`), with the seed's names, typed once at start-up.
//!
//! Every error names the variable at fault, so a bad deployment fails with one clear line.

use std::{collections::HashMap, io::IsTerminal, net::SocketAddr, path::PathBuf, time::Duration};

use secrecy::{SecretSlice, SecretString};

use crate::{domain::IpNet, text::percent_encode};

/// A setting that is missing or malformed.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {name}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub name: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// Where the data lives.
#[derive(Debug, Clone)]
pub enum DatabaseConfig {
    /// A Postgres server (production).
    Postgres {
        /// Connection URL; may hold a password.
        url: SecretString,
    },
    /// An embedded SQLite file (zero set-up default).
    Sqlite {
        /// Path of the database file.
        path: PathBuf,
    },
}

/// How accounts prove their address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerificationConfig {
    /// What registration mails (`VERIFICATION_METHOD`).
    pub method: VerificationMethod,
    /// Refuse sign-in until the address is verified.
    pub required: bool,
}

/// How an address is proven: which of a code and a link are mailed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerificationMethod {
    /// A one-time code.
    Code,
    /// An activation link.
    Link,
    /// Both, in one email.
    CodeAndLink,
}

impl VerificationMethod {
    /// Whether a code is mailed.
    #[must_use]
    pub fn sends_code(self) -> bool {
        matches!(self, Self::Code | Self::CodeAndLink)
    }

    /// Whether a link is mailed.
    #[must_use]
    pub fn sends_link(self) -> bool {
        matches!(self, Self::Link | Self::CodeAndLink)
    }

    /// What of `self` the deployment's `configured` method allows, if anything.
    #[must_use]
    pub fn within(self, configured: Self) -> Option<Self> {
        match (
            self.sends_code() && configured.sends_code(),
            self.sends_link() && configured.sends_link(),
        ) {
            (true, true) => Some(Self::CodeAndLink),
            (true, false) => Some(Self::Code),
            (false, true) => Some(Self::Link),
            (false, false) => None,
        }
    }
}

/// Outgoing mail server; absent means mail is written to the log.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Require TLS (STARTTLS, or implicit TLS on port 465).
    pub use_tls: bool,
    /// Login name, if the server needs one.
    pub user: Option<String>,
    /// Password for `user`.
    pub password: Option<SecretString>,
    /// `EMAIL_TIMEOUT_MS`: bound on connecting and on each exchange with the server.
    pub timeout: Duration,
}

/// TLS for the gRPC listener (`GRPC_TLS_CERT_FILE`, `GRPC_TLS_KEY_FILE`), optionally
/// asking clients for certificates from a CA (`GRPC_TLS_CLIENT_CA_FILE`).
#[derive(Debug, Clone)]
pub struct GrpcTlsConfig {
    /// The server's certificate chain, PEM.
    pub certificate_pem: String,
    /// Its private key, PEM.
    pub private_key_pem: SecretString,
    /// The CA whose client certificates a service may present instead of a service token;
    /// clients without one still connect.
    pub client_ca_pem: Option<String>,
}

/// The Django deployment `identity` replaced, for the links it mailed before the cutover.
#[derive(Debug, Clone, Default)]
pub struct DjangoConfig {
    /// `DJANGO_SECRET_KEY` (or `DJANGO_SECRET_KEY_FILE`), then `DJANGO_SECRET_KEY_FALLBACKS`
    /// (comma-separated): the keys its tokens may be made under. None: no Django link works.
    pub secret_keys: Vec<SecretString>,
    /// `DJANGO_PASSWORD_RESET_TIMEOUT`: Django's `PASSWORD_RESET_TIMEOUT` (three days by
    /// default), how long its links worked there.
    pub password_reset_timeout: Duration,
    /// `DJANGO_SIMPLEJWT_SIGNING_KEY`: simplejwt's `SIGNING_KEY`, by default the
    /// `DJANGO_SECRET_KEY`.
    pub simplejwt_signing_key: Option<SecretString>,
    /// `DJANGO_REFRESH_TOKENS_UNTIL` (RFC 3339): until then, a simplejwt refresh token may be
    /// exchanged once at Refresh for a session here. Unset: none is.
    pub refresh_tokens_until: Option<chrono::DateTime<chrono::Utc>>,
}

/// Google sign-in.
#[derive(Debug, Clone)]
pub struct GoogleConfig {
    /// OAuth client ids whose tokens are accepted (web, Android, iOS, ...); none turns Google off.
    pub client_ids: Vec<String>,
    /// Google's tokeninfo endpoint.
    pub tokeninfo_url: String,
    /// Google's userinfo endpoint.
    pub userinfo_url: String,
    /// Google's JSON Web Key Set.
    pub jwks_url: String,
    /// Bound on each call to Google.
    pub timeout: Duration,
    /// `GOOGLE_JWKS_REFETCH_INTERVAL`: an unknown `kid` refetches the key set at most this
    /// often, so a flood of made-up key ids cannot keep Google's key set busy.
    pub jwks_refetch_interval: Duration,
}

/// The WebAuthn relying party passkeys are bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebauthnConfig {
    /// `WEBAUTHN_RP_ID`: the domain passkeys are created for (the host of `PUBLIC_BASE_URL`
    /// when unset).
    pub rp_id: String,
    /// `WEBAUTHN_ORIGINS`: the origins (`https://app.example`, `http://localhost:3000`) whose
    /// pages may run the ceremonies (the origin of `PUBLIC_BASE_URL` when unset).
    pub origins: Vec<String>,
}

/// Which algorithm signs access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// Ed25519 signatures; verifiable from the published public key.
    EdDsa,
    /// HMAC-SHA256 over `SECRET_KEY`, for compatibility with the seed.
    Hs256,
}

/// Access-token settings.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Signing algorithm.
    pub algorithm: JwtAlgorithm,
    /// PKCS#8 PEM file of the Ed25519 signing key; generated and stored in the database when absent.
    pub private_key_file: Option<PathBuf>,
    /// `iss` claim.
    pub issuer: String,
    /// `aud` claim.
    pub audience: String,
    /// Lifetime of an access token.
    pub access_lifetime: Duration,
    /// Lifetime of each refresh token.
    pub refresh_lifetime: Duration,
    /// `REFRESH_REUSE_GRACE`: for this long after a refresh token is spent, presenting it
    /// again (a client retrying after a dropped answer) returns the same successor instead
    /// of revoking the session, while that successor is unspent; zero turns it off.
    pub refresh_reuse_grace: Duration,
    /// Hard cap on a session's life from its login, however often it is refreshed.
    pub session_absolute_lifetime: Duration,
    /// `KEY_ROTATION_PERIOD`: how long a signing key signs before the next takes over.
    pub key_rotation_period: Duration,
    /// `KEY_REFRESH_INTERVAL`: how often each replica reloads the key set (and schedules the
    /// next key when one is due).
    pub key_refresh_interval: Duration,
    /// `JWKS_MAX_AGE`: how long verifiers may cache the key set (`Cache-Control: max-age`).
    pub jwks_max_age: Duration,
    /// `KEY_ENCRYPTION_KEY` (or `_FILE`): 32 bytes, base64, that seal the private keys in the
    /// database; without it they are stored as they are.
    pub key_encryption_key: Option<SecretSlice<u8>>,
}

impl JwtConfig {
    /// How long before it signs a new key is published: one cache lifetime of the key set
    /// and one reload of every replica, so no verifier meets an unknown `kid`.
    #[must_use]
    pub fn key_publication_lead(&self) -> Duration {
        self.jwks_max_age + self.key_refresh_interval
    }
}

/// Argon2id cost parameters and the size of the pool that runs them.
#[derive(Debug, Clone, Copy)]
pub struct HashingConfig {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
    /// Hashes allowed to run at once; the rest wait their turn.
    pub concurrency: usize,
    /// `PASSWORD_HASH_QUEUE`: hashes that may wait for a thread; past that, calls are refused
    /// at once with a wait to retry after.
    pub queue: usize,
}

/// Per-client-IP request budgets per five minutes; 0 turns one off.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    /// Login attempts.
    pub login: u32,
    /// Registrations.
    pub register: u32,
    /// Code and link verifications.
    pub verify: u32,
    /// Resends and password resets.
    pub email: u32,
    /// Refreshes.
    pub refresh: u32,
}

/// Every setting of the service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Database backend.
    pub database: DatabaseConfig,
    /// Largest number of pooled database connections.
    pub database_pool_size: u32,
    /// Longest a single SQL statement may run (Postgres `statement_timeout`).
    pub statement_timeout: Duration,
    /// Longest a call may run, whatever deadline the client sets.
    pub request_timeout: Duration,
    /// Server secret for HMACs (codes, links); generated and stored in the database when absent.
    pub secret_key: Option<SecretString>,
    /// Development mode: pretty logs by default.
    pub debug: bool,
    /// Log format: `json` or `pretty`.
    pub log_format: LogFormat,
    /// OTLP/gRPC collector that receives traces, if any.
    pub otlp_endpoint: Option<String>,
    /// SMTP server, or `None` to log mail instead.
    pub smtp: Option<SmtpConfig>,
    /// The `From` address of every email.
    pub from_email: String,
    /// gRPC listener.
    pub grpc_listen_addr: SocketAddr,
    /// JSON bridge, pages, health and key set listener.
    pub http_listen_addr: SocketAddr,
    /// `METRICS_LISTEN_ADDR`: Prometheus metrics, on a listener of their own so the public
    /// bridge never serves them.
    pub metrics_listen_addr: SocketAddr,
    /// `METRICS_DATABASE_INTERVAL_MS`: how often the gauges read from the database (outbox
    /// depth, legacy hashes) are brought up to date; a scrape never queries the database.
    pub metrics_database_interval: Duration,
    /// `MAX_CONNECTIONS`: open connections each listener (gRPC, bridge, metrics) holds at
    /// most; past it, new ones wait in the kernel's backlog until one closes.
    pub max_connections: usize,
    /// Base of the links in emails.
    pub public_base_url: String,
    /// Front-end page that activation links redirect to, instead of the built-in page.
    pub activation_redirect_url: Option<String>,
    /// Front-end page that reset links redirect to, instead of the built-in form.
    pub password_reset_url: Option<String>,
    /// `EMAIL_SIGN_IN_REDIRECT_URL`: front-end page a browser that followed an emailed sign-in
    /// link is sent to, with the session (or the second-factor challenge) in the fragment.
    pub email_sign_in_redirect_url: Option<String>,
    /// `EMAIL_SIGN_IN`: whether `StartEmailSignIn` and `FinishEmailSignIn` sign people in by an
    /// emailed code or link; on by default.
    pub email_sign_in: bool,
    /// Directory whose templates override the built-in ones.
    pub templates_dir: Option<PathBuf>,
    /// How addresses are verified.
    pub verification: VerificationConfig,
    /// Life of an emailed code.
    pub otp_lifetime: Duration,
    /// `MFA_CHALLENGE_TIMEOUT`: how long a first factor's `mfa_token` waits for the second.
    pub mfa_challenge_timeout: Duration,
    /// `STEP_UP_MAX_AGE`: how recently a second factor must have been proven in a session for
    /// the calls that change an account with one (its password, address, factors).
    pub step_up_max_age: Duration,
    /// Minimum time between two emails to one address.
    pub resend_cooldown: Duration,
    /// Emails to one address per hour.
    pub resend_per_hour: u32,
    /// Life of an activation link.
    pub activation_link_lifetime: Duration,
    /// `UNVERIFIED_ACCOUNT_RETENTION`: accounts never proven are deleted this long after they
    /// were made.
    pub unverified_retention: Duration,
    /// `AUDIT_RETENTION`: audit events are deleted this long after they happened.
    pub audit_retention: Duration,
    /// The Django deployment moved from, whose mailed links still work.
    pub django: DjangoConfig,
    /// `REGISTER_REVEALS_EXISTING`: Register answers `ALREADY_EXISTS` for a taken address and
    /// returns the new user, for deployments whose callers are all trusted. Off by default:
    /// Register then answers alike for every address.
    pub register_reveals_existing: bool,
    /// Life of a password reset link.
    pub password_reset_lifetime: Duration,
    /// Access and refresh tokens.
    pub jwt: JwtConfig,
    /// Password hashing.
    pub hashing: HashingConfig,
    /// Per-IP budgets.
    pub rate_limits: RateLimits,
    /// Google sign-in.
    pub google: GoogleConfig,
    /// Passkeys: the relying party, or `None` when no origin qualifies (passkeys off).
    pub webauthn: Option<WebauthnConfig>,
    /// `HTTP_HEADER_READ_TIMEOUT_MS`: a bridge client must send a request's headers within
    /// this, and an HTTP/1 connection idle between requests is closed after it.
    pub http_header_read_timeout: Duration,
    /// `GRPC_MAX_CONCURRENT_STREAMS`: calls one gRPC connection may have in flight.
    pub grpc_max_concurrent_streams: u32,
    /// `GRPC_KEEPALIVE_INTERVAL`: the server pings idle gRPC connections this often, and
    /// closes one whose ping goes unanswered for `GRPC_KEEPALIVE_TIMEOUT`.
    pub grpc_keepalive_interval: Duration,
    /// See `grpc_keepalive_interval`.
    pub grpc_keepalive_timeout: Duration,
    /// TLS on the gRPC listener; plaintext when `None`.
    pub grpc_tls: Option<GrpcTlsConfig>,
    /// `SERVICE_TOKENS_FILE`: the services allowed to call `TokenService`, and what for (read
    /// at start-up; a bad line stops it).
    pub service_tokens_file: Option<PathBuf>,
    /// `REVOCATION_POLL_INTERVAL_MS`: how often a revocation stream looks for new entries.
    pub revocation_poll_interval: Duration,
    /// `REVOCATION_HEARTBEAT_INTERVAL`: how often an idle revocation stream says it is caught
    /// up, so readers can tell it is alive.
    pub revocation_heartbeat_interval: Duration,
    /// `TRUSTED_PROXIES`: address ranges whose `x-forwarded-for` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// `IPV6_CLIENT_PREFIX`: IPv6 clients are counted by this many leading bits (a /64 is
    /// one host's).
    pub ipv6_client_prefix: u8,
    /// Delivery attempts before an email is given up.
    pub email_max_attempts: u32,
    /// First retry delay; it doubles on each failure.
    pub email_retry_base: Duration,
    /// How often the outbox worker looks for mail when idle.
    pub email_poll_interval: Duration,
    /// `EMAIL_LEASE_MS`: how long a replica's claim on an email lasts; a replica that dies
    /// holding one leaves the email to the others after this. Longer than `EMAIL_TIMEOUT_MS`.
    pub email_lease: Duration,
}

/// Log output style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (production).
    Json,
    /// Human-readable lines (terminals).
    Pretty,
}

impl Config {
    /// Reads `.env` (when present) and then the process environment.
    ///
    /// # Errors
    /// The first setting that is malformed.
    pub fn from_env() -> Result<Self, ConfigError> {
        // A missing .env is normal; a malformed one must not be silently ignored.
        if let Err(e) = dotenvy::dotenv()
            && !e.not_found()
        {
            return Err(ConfigError {
                name: ".env",
                reason: e.to_string(),
            });
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the configuration from explicit values; unset names take their defaults.
    ///
    /// # Errors
    /// The first setting that is malformed.
    pub fn from_map(values: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_lookup(|name| values.get(name).cloned())
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let debug = env.bool("DEBUG", false)?;
        let secret_key = match env.secret("SECRET_KEY", "SECRET_KEY_FILE")? {
            Some(key) if key.len() < 32 => {
                return Err(ConfigError {
                    name: "SECRET_KEY",
                    reason: "must be at least 32 characters".into(),
                });
            }
            other => other.map(SecretString::from),
        };
        let log_format = match env.get("LOG_FORMAT").as_deref() {
            // A person at a terminal gets readable lines; collectors get JSON.
            None if debug || std::io::stdout().is_terminal() => LogFormat::Pretty,
            None | Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(_) => return Err(env.error("LOG_FORMAT", "must be json or pretty")),
        };
        let jwt_algorithm = match env.get("JWT_ALGORITHM").as_deref() {
            None | Some("EdDSA") => JwtAlgorithm::EdDsa,
            Some("HS256") => JwtAlgorithm::Hs256,
            Some(_) => return Err(env.error("JWT_ALGORITHM", "must be EdDSA or HS256")),
        };
        if jwt_algorithm == JwtAlgorithm::Hs256 && secret_key.is_none() {
            return Err(env.error("SECRET_KEY", "is required when JWT_ALGORITHM is HS256"));
        }
        let public_base_url = env
            .get("PUBLIC_BASE_URL")
            .unwrap_or_else(|| "http://localhost:8080".into())
            .trim_end_matches('/')
            .to_owned();
        let verification = match env.get("VERIFICATION_METHOD").as_deref() {
            None | Some("both") => VerificationMethod::CodeAndLink,
            Some("code" | "otp") => VerificationMethod::Code,
            Some("link") => VerificationMethod::Link,
            Some(_) => return Err(env.error("VERIFICATION_METHOD", "must be code, link or both")),
        };
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        let smtp_timeout = smtp_timeout(&env)?;
        Ok(Self {
            database: database(&env)?,
            database_pool_size: env.number("DATABASE_POOL_SIZE", 10)?,
            statement_timeout: Duration::from_millis(
                env.number("DATABASE_STATEMENT_TIMEOUT_MS", 10_000)?,
            ),
            request_timeout: Duration::from_millis(env.number("REQUEST_TIMEOUT_MS", 30_000)?),
            secret_key,
            debug,
            log_format,
            otlp_endpoint: env.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            smtp: smtp(&env)?,
            from_email: env
                .get("DEFAULT_FROM_EMAIL")
                .unwrap_or_else(|| "identity@localhost".into()),
            grpc_listen_addr: env.parsed("GRPC_LISTEN_ADDR", "0.0.0.0:50051")?,
            http_listen_addr: env.parsed("HTTP_LISTEN_ADDR", "0.0.0.0:8080")?,
            metrics_listen_addr: env.parsed("METRICS_LISTEN_ADDR", "0.0.0.0:9464")?,
            metrics_database_interval: Duration::from_millis(
                env.number("METRICS_DATABASE_INTERVAL_MS", 15_000)?,
            ),
            max_connections: match env.number("MAX_CONNECTIONS", 1_000)? {
                0 => return Err(env.error("MAX_CONNECTIONS", "must be at least 1")),
                max => max,
            },
            activation_redirect_url: env.get("ACTIVATION_REDIRECT_URL"),
            password_reset_url: env.get("PASSWORD_RESET_URL"),
            email_sign_in_redirect_url: env.get("EMAIL_SIGN_IN_REDIRECT_URL"),
            email_sign_in: env.bool("EMAIL_SIGN_IN", true)?,
            public_base_url: public_base_url.clone(),
            templates_dir: env.get("TEMPLATES_DIR").map(PathBuf::from),
            verification: VerificationConfig {
                method: verification,
                required: env.bool("VERIFICATION_REQUIRED", true)?,
            },
            otp_lifetime: env.seconds("OTP_EXPIRATION_TIME", 600)?,
            mfa_challenge_timeout: env.seconds("MFA_CHALLENGE_TIMEOUT", 300)?,
            step_up_max_age: env.seconds("STEP_UP_MAX_AGE", 600)?,
            resend_cooldown: env.seconds("OTP_RESEND_COOLDOWN", 60)?,
            resend_per_hour: env.number("RESEND_PER_HOUR", 5)?,
            activation_link_lifetime: env.seconds("ACTIVATION_LINK_TIMEOUT", 86_400)?,
            unverified_retention: env.seconds("UNVERIFIED_ACCOUNT_RETENTION", 7 * 86_400)?,
            audit_retention: env.seconds("AUDIT_RETENTION", 90 * 86_400)?,
            django: DjangoConfig {
                secret_keys: env
                    .secret("DJANGO_SECRET_KEY", "DJANGO_SECRET_KEY_FILE")?
                    .into_iter()
                    .chain(
                        env.get("DJANGO_SECRET_KEY_FALLBACKS")
                            .unwrap_or_default()
                            .split(',')
                            .map(str::trim)
                            .filter(|key| !key.is_empty())
                            .map(str::to_owned),
                    )
                    .map(SecretString::from)
                    .collect(),
                password_reset_timeout: env.seconds("DJANGO_PASSWORD_RESET_TIMEOUT", 259_200)?,
                simplejwt_signing_key: env
                    .secret(
                        "DJANGO_SIMPLEJWT_SIGNING_KEY",
                        "DJANGO_SIMPLEJWT_SIGNING_KEY_FILE",
                    )?
                    .or(env.secret("DJANGO_SECRET_KEY", "DJANGO_SECRET_KEY_FILE")?)
                    .map(SecretString::from),
                refresh_tokens_until: env
                    .get("DJANGO_REFRESH_TOKENS_UNTIL")
                    .map(|raw| {
                        chrono::DateTime::parse_from_rfc3339(&raw)
                            .map(|at| at.with_timezone(&chrono::Utc))
                            .map_err(|_| {
                                env.error(
                                    "DJANGO_REFRESH_TOKENS_UNTIL",
                                    "must be an RFC 3339 instant, e.g. 2027-01-31T00:00:00Z",
                                )
                            })
                    })
                    .transpose()?,
            },
            register_reveals_existing: env.bool("REGISTER_REVEALS_EXISTING", false)?,
            password_reset_lifetime: env.seconds("PASSWORD_RESET_TIMEOUT", 3_600)?,
            jwt: JwtConfig {
                algorithm: jwt_algorithm,
                private_key_file: env.get("JWT_PRIVATE_KEY_FILE").map(PathBuf::from),
                issuer: env.get("JWT_ISSUER").unwrap_or_else(|| "identity".into()),
                audience: env.get("JWT_AUDIENCE").unwrap_or_else(|| "identity".into()),
                access_lifetime: env.seconds("ACCESS_TOKEN_LIFETIME", 300)?,
                refresh_lifetime: env.seconds("REFRESH_TOKEN_LIFETIME", 86_400)?,
                refresh_reuse_grace: env.seconds("REFRESH_REUSE_GRACE", 10)?,
                session_absolute_lifetime: env.seconds("SESSION_ABSOLUTE_LIFETIME", 30 * 86_400)?,
                key_rotation_period: env.seconds("KEY_ROTATION_PERIOD", 30 * 86_400)?,
                key_refresh_interval: env.seconds("KEY_REFRESH_INTERVAL", 30)?,
                jwks_max_age: env.seconds("JWKS_MAX_AGE", 300)?,
                key_encryption_key: key_encryption_key(&env)?,
            },
            hashing: HashingConfig {
                memory_kib: env.number("PASSWORD_HASH_MEMORY_KIB", 19_456)?,
                iterations: env.number("PASSWORD_HASH_ITERATIONS", 2)?,
                parallelism: env.number("PASSWORD_HASH_PARALLELISM", 1)?,
                concurrency: env.number("PASSWORD_HASH_CONCURRENCY", cpus)?,
                queue: env.number("PASSWORD_HASH_QUEUE", 64)?,
            },
            rate_limits: RateLimits {
                login: env.number("RATE_LIMIT_LOGIN", 30)?,
                register: env.number("RATE_LIMIT_REGISTER", 30)?,
                verify: env.number("RATE_LIMIT_VERIFY", 30)?,
                email: env.number("RATE_LIMIT_EMAIL", 30)?,
                refresh: env.number("RATE_LIMIT_REFRESH", 150)?,
            },
            http_header_read_timeout: Duration::from_millis(
                env.number("HTTP_HEADER_READ_TIMEOUT_MS", 10_000)?,
            ),
            grpc_max_concurrent_streams: env.number("GRPC_MAX_CONCURRENT_STREAMS", 100)?,
            grpc_keepalive_interval: env.seconds("GRPC_KEEPALIVE_INTERVAL", 60)?,
            grpc_keepalive_timeout: env.seconds("GRPC_KEEPALIVE_TIMEOUT", 20)?,
            grpc_tls: grpc_tls(&env)?,
            service_tokens_file: env.get("SERVICE_TOKENS_FILE").map(PathBuf::from),
            revocation_heartbeat_interval: env.seconds("REVOCATION_HEARTBEAT_INTERVAL", 15)?,
            revocation_poll_interval: Duration::from_millis(
                env.number("REVOCATION_POLL_INTERVAL_MS", 500)?,
            ),
            trusted_proxies: env.list("TRUSTED_PROXIES")?,
            ipv6_client_prefix: match env.number("IPV6_CLIENT_PREFIX", 64)? {
                prefix @ 1..=128 => prefix,
                _ => return Err(env.error("IPV6_CLIENT_PREFIX", "must be 1 to 128")),
            },
            webauthn: webauthn_config(&env, &public_base_url)?,
            google: GoogleConfig {
                client_ids: env.list("GOOGLE_OAUTH_CLIENT_ID")?,
                tokeninfo_url: env
                    .get("GOOGLE_TOKENINFO_URL")
                    .unwrap_or_else(|| "https://oauth2.googleapis.com/tokeninfo".into()),
                userinfo_url: env
                    .get("GOOGLE_USERINFO_URL")
                    .unwrap_or_else(|| "https://openidconnect.googleapis.com/v1/userinfo".into()),
                jwks_url: env
                    .get("GOOGLE_JWKS_URL")
                    .unwrap_or_else(|| "https://www.googleapis.com/oauth2/v3/certs".into()),
                timeout: Duration::from_millis(env.number("GOOGLE_TIMEOUT_MS", 5_000)?),
                jwks_refetch_interval: env.seconds("GOOGLE_JWKS_REFETCH_INTERVAL", 60)?,
            },
            email_max_attempts: env.number("EMAIL_MAX_ATTEMPTS", 8)?,
            email_retry_base: env.seconds("EMAIL_RETRY_BASE", 5)?,
            email_poll_interval: Duration::from_millis(
                env.number("EMAIL_POLL_INTERVAL_MS", 1_000)?,
            ),
            email_lease: email_lease(&env, smtp_timeout)?,
        })
    }
}

/// TLS for gRPC: a certificate and its key together, and a client CA only with them.
/// The relying party, when passkeys can work here: set by `WEBAUTHN_RP_ID` and
/// `WEBAUTHN_ORIGINS` (checked: each origin a `https` URL, or `http` on `localhost`, and the RP
/// ID its host or a parent domain of it, as browsers require), or else derived from
/// `PUBLIC_BASE_URL` when that origin qualifies; `None` turns passkeys off.
fn webauthn_config(
    env: &Env<'_>,
    public_base_url: &str,
) -> Result<Option<WebauthnConfig>, ConfigError> {
    let configured = env.get("WEBAUTHN_ORIGINS").is_some() || env.get("WEBAUTHN_RP_ID").is_some();
    let origins: Vec<String> = env.get("WEBAUTHN_ORIGINS").map_or_else(
        || vec![public_base_url.to_owned()],
        |listed| {
            listed
                .split(',')
                .map(str::trim)
                .filter(|origin| !origin.is_empty())
                .map(|origin| origin.trim_end_matches('/').to_owned())
                .collect()
        },
    );
    let checked = check_relying_party(env.get("WEBAUTHN_RP_ID"), origins);
    match checked {
        Ok(relying_party) => Ok(Some(relying_party)),
        Err((name, reason)) if configured => Err(env.error(name, reason)),
        Err(_) => Ok(None),
    }
}

fn check_relying_party(
    rp_id: Option<String>,
    origins: Vec<String>,
) -> Result<WebauthnConfig, (&'static str, String)> {
    let mut hosts = Vec::new();
    for origin in &origins {
        let url = url::Url::parse(origin)
            .map_err(|e| ("WEBAUTHN_ORIGINS", format!("{origin} is not a URL: {e}")))?;
        let host = url.host_str().unwrap_or_default().to_owned();
        if !(url.scheme() == "https" || (url.scheme() == "http" && host == "localhost")) {
            return Err((
                "WEBAUTHN_ORIGINS",
                format!("{origin}: browsers run WebAuthn only on https:// (or http://localhost)"),
            ));
        }
        hosts.push(host);
    }
    let rp_id = rp_id.unwrap_or_else(|| hosts.first().cloned().unwrap_or_default());
    if rp_id.is_empty() || rp_id.contains(['/', ':']) {
        return Err((
            "WEBAUTHN_RP_ID",
            "must be a domain name, such as example.com".into(),
        ));
    }
    if let Some(host) = hosts
        .iter()
        .find(|host| !(*host == &rp_id || host.ends_with(&format!(".{rp_id}"))))
    {
        return Err((
            "WEBAUTHN_RP_ID",
            format!("{rp_id} is neither {host} nor a parent domain of it (WEBAUTHN_ORIGINS)"),
        ));
    }
    if origins.is_empty() {
        return Err(("WEBAUTHN_ORIGINS", "names no origin".into()));
    }
    Ok(WebauthnConfig { rp_id, origins })
}

fn grpc_tls(env: &Env) -> Result<Option<GrpcTlsConfig>, ConfigError> {
    let certificate = env.file("GRPC_TLS_CERT_FILE")?;
    let private_key = env.file("GRPC_TLS_KEY_FILE")?;
    let client_ca = env.file("GRPC_TLS_CLIENT_CA_FILE")?;
    match (certificate, private_key) {
        (Some(certificate_pem), Some(private_key)) => Ok(Some(GrpcTlsConfig {
            certificate_pem,
            private_key_pem: SecretString::from(private_key),
            client_ca_pem: client_ca,
        })),
        (None, None) if client_ca.is_none() => Ok(None),
        (None, None) => Err(env.error(
            "GRPC_TLS_CLIENT_CA_FILE",
            "needs GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE: client certificates need TLS",
        )),
        (Some(_), None) => Err(env.error("GRPC_TLS_KEY_FILE", "is needed with GRPC_TLS_CERT_FILE")),
        (None, Some(_)) => Err(env.error("GRPC_TLS_CERT_FILE", "is needed with GRPC_TLS_KEY_FILE")),
    }
}

fn database(env: &Env<'_>) -> Result<DatabaseConfig, ConfigError> {
    if let Some(url) = env.secret("DATABASE_URL", "DATABASE_URL_FILE")? {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            return Ok(DatabaseConfig::Sqlite { path: path.into() });
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(env.error("DATABASE_URL", "must start with postgres:// or sqlite:"));
        }
        return Ok(DatabaseConfig::Postgres { url: url.into() });
    }
    let Some(name) = env.get("DATABASE_NAME") else {
        let path = env
            .get("SQLITE_PATH")
            .unwrap_or_else(|| "identity.sqlite3".into());
        return Ok(DatabaseConfig::Sqlite { path: path.into() });
    };
    let user = env
        .get("DATABASE_USER")
        .unwrap_or_else(|| "postgres".into());
    let host = env
        .get("DATABASE_HOST")
        .unwrap_or_else(|| "localhost".into());
    let port: u16 = env.parsed("DATABASE_PORT", "5432")?;
    let password = env
        .secret("DATABASE_PASSWORD", "DATABASE_PASSWORD_FILE")?
        .map(|p| format!(":{}", percent_encode(&p)))
        .unwrap_or_default();
    let url = format!(
        "postgres://{}{password}@{host}:{port}/{}",
        percent_encode(&user),
        percent_encode(&name)
    );
    Ok(DatabaseConfig::Postgres { url: url.into() })
}

fn smtp(env: &Env<'_>) -> Result<Option<SmtpConfig>, ConfigError> {
    let Some(host) = env.get("EMAIL_HOST") else {
        return Ok(None);
    };
    let use_tls = env.bool("EMAIL_USE_TLS", true)?;
    Ok(Some(SmtpConfig {
        host,
        port: env.parsed("EMAIL_PORT", if use_tls { "587" } else { "25" })?,
        use_tls,
        user: env.get("EMAIL_HOST_USER"),
        password: env
            .secret("EMAIL_HOST_PASSWORD", "EMAIL_HOST_PASSWORD_FILE")?
            .map(SecretString::from),
        timeout: smtp_timeout(env)?,
    }))
}

fn smtp_timeout(env: &Env<'_>) -> Result<Duration, ConfigError> {
    Ok(Duration::from_millis(
        env.number("EMAIL_TIMEOUT_MS", 30_000)?,
    ))
}

/// A claim must outlast one SMTP exchange, or a slow send would be taken over and sent twice.
fn email_lease(env: &Env<'_>, smtp_timeout: Duration) -> Result<Duration, ConfigError> {
    let lease = Duration::from_millis(env.number("EMAIL_LEASE_MS", 120_000)?);
    if lease <= smtp_timeout {
        return Err(env.error(
            "EMAIL_LEASE_MS",
            "must be longer than EMAIL_TIMEOUT_MS (a claim must outlast one SMTP exchange)",
        ));
    }
    Ok(lease)
}

fn key_encryption_key(env: &Env<'_>) -> Result<Option<SecretSlice<u8>>, ConfigError> {
    use base64::{Engine, engine::general_purpose::STANDARD};
    let Some(encoded) = env.secret("KEY_ENCRYPTION_KEY", "KEY_ENCRYPTION_KEY_FILE")? else {
        return Ok(None);
    };
    match STANDARD.decode(encoded.trim()) {
        Ok(bytes) if bytes.len() == 32 => Ok(Some(SecretSlice::from(bytes))),
        _ => Err(env.error(
            "KEY_ENCRYPTION_KEY",
            "must be 32 bytes in base64 (openssl rand -base64 32)",
        )),
    }
}

/// Typed access to one lookup function; empty values count as unset.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    /// The text of the file the setting `name` names, if it is set.
    fn file(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        self.get(name)
            .map(|path| {
                std::fs::read_to_string(&path)
                    .map_err(|e| self.error(name, format!("cannot read {path}: {e}")))
            })
            .transpose()
    }

    /// A secret from `NAME`, or from the file `NAME_FILE` names (Kubernetes secret volumes).
    fn secret(
        &self,
        name: &'static str,
        file_name: &'static str,
    ) -> Result<Option<String>, ConfigError> {
        if let Some(value) = self.get(name) {
            return Ok(Some(value));
        }
        let Some(path) = self.get(file_name) else {
            return Ok(None);
        };
        let value = std::fs::read_to_string(&path)
            .map_err(|e| self.error(file_name, format!("cannot read {path}: {e}")))?;
        Ok(Some(value.trim_end_matches(['\r', '\n']).to_owned()).filter(|v| !v.is_empty()))
    }

    fn error(&self, name: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            name,
            reason: reason.into(),
        }
    }

    fn parsed<T: std::str::FromStr>(
        &self,
        name: &'static str,
        default: &str,
    ) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        let raw = self.get(name).unwrap_or_else(|| default.to_owned());
        raw.trim()
            .parse()
            .map_err(|e| self.error(name, format!("{raw:?} is not valid: {e}")))
    }

    fn number<T: std::str::FromStr + ToString>(
        &self,
        name: &'static str,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        self.parsed(name, &default.to_string())
    }

    fn seconds(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.number(name, default).map(Duration::from_secs)
    }

    fn bool(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
            Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(false),
            Some(v) => Err(self.error(name, format!("{v:?} is not true or false"))),
        }
    }

    fn list<T: std::str::FromStr>(&self, name: &'static str) -> Result<Vec<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        self.get(name)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse()
                    .map_err(|e| self.error(name, format!("{item:?} is not valid: {e}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::{Config, DatabaseConfig};

    fn config(pairs: &[(&str, &str)]) -> Result<Config, super::ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_map(&map)
    }

    #[test]
    fn defaults_to_embedded_sqlite_and_log_mail() {
        let config = config(&[]).unwrap();
        assert!(matches!(config.database, DatabaseConfig::Sqlite { .. }));
        assert!(config.smtp.is_none());
        assert_eq!(config.grpc_listen_addr.port(), 50051);
        assert_eq!(config.otp_lifetime.as_secs(), 600);
    }

    #[test]
    fn the_relying_party_is_checked_and_derived_only_where_browsers_allow_it() {
        let local = config(&[]).unwrap().webauthn.unwrap();
        assert_eq!(local.rp_id, "localhost");
        assert_eq!(local.origins, ["http://localhost:8080"]);
        // A plain-http public URL elsewhere cannot host passkeys: off, not a failed start.
        let plain = config(&[("PUBLIC_BASE_URL", "http://identity.test")]).unwrap();
        assert!(plain.webauthn.is_none());
        let app = config(&[
            ("WEBAUTHN_RP_ID", "example.com"),
            (
                "WEBAUTHN_ORIGINS",
                "https://app.example.com, https://example.com/",
            ),
        ])
        .unwrap()
        .webauthn
        .unwrap();
        assert_eq!(
            app.origins,
            ["https://app.example.com", "https://example.com"]
        );
        for (rp_id, origins) in [
            ("example.com", "http://app.example.com"),
            ("example.com", "https://example.org"),
            ("example.com", "https://notexample.com"),
            ("https://example.com", "https://example.com"),
            ("example.com", "not a url"),
        ] {
            let error =
                config(&[("WEBAUTHN_RP_ID", rp_id), ("WEBAUTHN_ORIGINS", origins)]).unwrap_err();
            assert!(
                error.name.starts_with("WEBAUTHN_"),
                "{rp_id} {origins}: {error:?}"
            );
        }
    }

    #[test]
    fn errors_name_the_variable() {
        let error = config(&[("OTP_EXPIRATION_TIME", "ten")]).unwrap_err();
        assert_eq!(error.name, "OTP_EXPIRATION_TIME");
        assert!(config(&[("SECRET_KEY", "short")]).unwrap_err().name == "SECRET_KEY");
        assert!(config(&[("DATABASE_URL", "mysql://x")]).unwrap_err().name == "DATABASE_URL");
        assert!(config(&[("JWT_ALGORITHM", "HS256")]).unwrap_err().name == "SECRET_KEY");
        let lease = config(&[("EMAIL_TIMEOUT_MS", "5000"), ("EMAIL_LEASE_MS", "5000")]);
        assert_eq!(lease.unwrap_err().name, "EMAIL_LEASE_MS");
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret-key");
        std::fs::write(&path, "0123456789abcdef0123456789abcdef\n").unwrap();
        let config = config(&[("SECRET_KEY_FILE", path.to_str().unwrap())]).unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(
            config.secret_key.unwrap().expose_secret(),
            "0123456789abcdef0123456789abcdef"
        );
        let missing = config_error(&[("DATABASE_URL_FILE", "/nonexistent/identity")]);
        assert_eq!(missing.name, "DATABASE_URL_FILE");
    }

    #[test]
    fn tls_needs_a_certificate_and_key_together_and_a_client_ca_only_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("any.pem");
        std::fs::write(&pem, "pem").unwrap();
        let pem = pem.to_str().unwrap();
        assert_eq!(
            config_error(&[("GRPC_TLS_CERT_FILE", pem)]).name,
            "GRPC_TLS_KEY_FILE"
        );
        assert_eq!(
            config_error(&[("GRPC_TLS_CLIENT_CA_FILE", pem)]).name,
            "GRPC_TLS_CLIENT_CA_FILE"
        );
        assert_eq!(
            config_error(&[("GRPC_TLS_CERT_FILE", "/nonexistent/cert.pem")]).name,
            "GRPC_TLS_CERT_FILE"
        );
        let tls = config(&[("GRPC_TLS_CERT_FILE", pem), ("GRPC_TLS_KEY_FILE", pem)])
            .unwrap()
            .grpc_tls
            .unwrap();
        assert!(tls.client_ca_pem.is_none());
        assert!(config(&[]).unwrap().grpc_tls.is_none());
    }

    fn config_error(pairs: &[(&str, &str)]) -> super::ConfigError {
        config(pairs).unwrap_err()
    }

    #[test]
    fn builds_a_postgres_url_from_the_seed_variables() {
        let config = config(&[
            ("DATABASE_NAME", "accounts"),
            ("DATABASE_USER", "app"),
            ("DATABASE_PASSWORD", "p@ss word"),
            ("DATABASE_HOST", "db"),
            ("DATABASE_PORT", "6543"),
        ])
        .unwrap();
        let DatabaseConfig::Postgres { url } = config.database else {
            panic!("expected postgres");
        };
        use secrecy::ExposeSecret;
        assert_eq!(
            url.expose_secret(),
            "postgres://app:p%40ss%20word@db:6543/accounts"
        );
    }
}
