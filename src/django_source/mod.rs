//! Where `identity import-django` reads a Django deployment's users: a `manage.py dumpdata`
//! file or the deployment's Postgres database, `auth_user` or a custom user model whose
//! field (or column) names are given.

mod database;
mod dumpdata;
mod import;

use std::path::PathBuf;

use secrecy::SecretString;

pub use database::DatabaseSource;
pub use dumpdata::DumpdataSource;
pub use import::{import, survey};

use crate::services::django_import::DjangoAccount;

/// The fields of a Django user model `identity` imports, in the order reports name them.
pub const FIELDS: [&str; 11] = [
    "id",
    "email",
    "password",
    "first_name",
    "last_name",
    "is_active",
    "is_staff",
    "is_superuser",
    "date_joined",
    "last_login",
    "is_verified",
];

/// How the source model names each field: Django's `auth_user` names by default, and a
/// verified flag named `is_verified` where the model has one (otherwise an account Django
/// let sign in counts as proven).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldNames {
    names: Vec<(&'static str, Option<String>)>,
    /// Fields read by their default name only where the source has it.
    if_present: Vec<&'static str>,
}

impl Default for FieldNames {
    fn default() -> Self {
        Self {
            names: FIELDS
                .iter()
                .map(|field| (*field, Some((*field).to_owned())))
                .collect(),
            if_present: vec!["is_verified"],
        }
    }
}

impl FieldNames {
    /// The default names with overrides `field=name` (an empty name: the model has none;
    /// only names and `last_login` and `is_verified` may be missing).
    ///
    /// # Errors
    /// An unknown field, a malformed override, or a required field left without a name.
    pub fn with_overrides(overrides: &[String]) -> anyhow::Result<Self> {
        let mut names = Self::default();
        for pair in overrides {
            let (field, name) = pair
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--field {pair:?}: expected field=name"))?;
            let slot = names
                .names
                .iter_mut()
                .find(|(known, _)| *known == field.trim())
                .ok_or_else(|| {
                    anyhow::anyhow!("--field {pair:?}: fields are {}", FIELDS.join(", "))
                })?;
            let name = name.trim();
            slot.1 = (!name.is_empty()).then(|| name.to_owned());
            let overridden = slot.0;
            names.if_present.retain(|field| *field != overridden);
        }
        for required in ["id", "email", "password", "is_active", "date_joined"] {
            anyhow::ensure!(
                names.name(required).is_some(),
                "--field {required}= : the {required} field is required"
            );
        }
        Ok(names)
    }

    /// The same names, without the fields read only where present that `columns` lacks.
    #[must_use]
    pub fn present_in(mut self, columns: &[String]) -> Self {
        for (field, name) in &mut self.names {
            let absent = name
                .as_ref()
                .is_some_and(|name| !columns.iter().any(|column| column == name));
            if self.if_present.contains(field) && absent {
                *name = None;
            }
        }
        self
    }

    /// The source's name for `field`, if it has one.
    #[must_use]
    pub fn name(&self, field: &str) -> Option<&str> {
        self.names
            .iter()
            .find(|(known, _)| *known == field)
            .and_then(|(_, name)| name.as_deref())
    }
}

/// Where to read.
#[derive(Debug)]
pub enum SourceSpec {
    /// A `manage.py dumpdata` file, and the model (`app_label.model`) to take from it.
    Dumpdata {
        /// The file.
        path: PathBuf,
        /// e.g. `auth.user`.
        model: String,
    },
    /// The Django database (Postgres), and the user table.
    Database {
        /// Its URL; a secret.
        url: SecretString,
        /// e.g. `auth_user` or `accounts_user`.
        table: String,
    },
}

/// A source of accounts, read in batches in id order.
pub enum Source {
    /// A dumpdata file.
    Dumpdata(DumpdataSource),
    /// A database (boxed: a connection is large, and there is one per import).
    Database(Box<DatabaseSource>),
}

impl Source {
    /// Opens the source.
    ///
    /// # Errors
    /// When the file cannot be read or parsed, or the database cannot be reached.
    pub async fn open(spec: SourceSpec, fields: FieldNames) -> anyhow::Result<Self> {
        Ok(match spec {
            SourceSpec::Dumpdata { path, model } => {
                Self::Dumpdata(DumpdataSource::open(&path, &model, fields)?)
            }
            SourceSpec::Database { url, table } => {
                Self::Database(Box::new(DatabaseSource::open(&url, &table, fields).await?))
            }
        })
    }

    /// The `jti`s of the refresh tokens simplejwt's blacklist holds, if the source has it.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn blacklisted_jtis(&mut self) -> anyhow::Result<Vec<String>> {
        match self {
            Self::Dumpdata(source) => Ok(source.blacklisted_jtis()),
            Self::Database(source) => source.blacklisted_jtis().await,
        }
    }

    /// Up to `limit` accounts with ids above `after`, in id order.
    ///
    /// # Errors
    /// When a record does not read as an account, or the database fails.
    pub async fn batch(&mut self, after: i64, limit: usize) -> anyhow::Result<Vec<DjangoAccount>> {
        match self {
            Self::Dumpdata(source) => source.batch(after, limit),
            Self::Database(source) => source.batch(after, limit).await,
        }
    }
}
