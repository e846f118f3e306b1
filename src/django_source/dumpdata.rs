//! A `manage.py dumpdata` file: a JSON array of `{"model", "pk", "fields"}` records.

use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use super::FieldNames;
use crate::services::django_import::DjangoAccount;

/// simplejwt's blacklist models in a dump.
const OUTSTANDING_TOKEN: &str = "token_blacklist.outstandingtoken";
const BLACKLISTED_TOKEN: &str = "token_blacklist.blacklistedtoken";

/// The user records of one model in a dumpdata file, in id order, and the `jti`s of the
/// refresh tokens simplejwt's blacklist holds, when the dump has it.
pub struct DumpdataSource {
    accounts: Vec<DjangoAccount>,
    blacklisted: Vec<String>,
}

impl DumpdataSource {
    /// Reads the records of `model` (`app_label.model`, e.g. `auth.user`) from `path`.
    ///
    /// # Errors
    /// When the file cannot be read, is not a dumpdata array, or a record of the model does
    /// not read as an account (the error names its `pk` and field).
    pub fn open(path: &Path, model: &str, fields: FieldNames) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        // Record by record: a dump of 100 000 users never stands in memory as JSON values.
        let mut accounts = Vec::new();
        let mut outstanding = std::collections::HashMap::new();
        let mut blacklisted_tokens = Vec::new();
        let mut failure = None;
        let reader = Records(|record: Record| {
            if record.model.eq_ignore_ascii_case(OUTSTANDING_TOKEN) {
                if let (Some(pk), Some(Value::String(jti))) =
                    (record.pk.as_i64(), record.fields.get("jti"))
                {
                    outstanding.insert(pk, jti.clone());
                }
                return;
            }
            if record.model.eq_ignore_ascii_case(BLACKLISTED_TOKEN) {
                blacklisted_tokens.extend(record.fields.get("token").and_then(Value::as_i64));
                return;
            }
            if failure.is_some() || !record.model.eq_ignore_ascii_case(model) {
                return;
            }
            let read = record
                .pk
                .as_i64()
                .ok_or_else(|| anyhow::anyhow!("a {model} record has no integer pk"))
                .and_then(|pk| {
                    account(pk, &record.fields, &fields).with_context(|| format!("{model} {pk}"))
                });
            match read {
                Ok(account) => accounts.push(account),
                Err(error) => failure = Some(error),
            }
        });
        let mut json = serde_json::Deserializer::from_str(&text);
        serde::de::DeserializeSeed::deserialize(reader, &mut json)
            .and_then(|()| json.end())
            .with_context(|| format!("{} is not a dumpdata JSON array", path.display()))?;
        if let Some(error) = failure {
            return Err(error);
        }
        anyhow::ensure!(
            !accounts.is_empty(),
            "{} holds no {model} records (name the model with --model)",
            path.display()
        );
        accounts.sort_by_key(|account| account.id);
        let blacklisted = blacklisted_tokens
            .iter()
            .filter_map(|token| outstanding.get(token).cloned())
            .collect();
        Ok(Self {
            accounts,
            blacklisted,
        })
    }

    /// The `jti`s simplejwt's blacklist holds in the dump (none when it was not dumped).
    #[must_use]
    pub fn blacklisted_jtis(&self) -> Vec<String> {
        self.blacklisted.clone()
    }

    /// Up to `limit` accounts with ids above `after`.
    ///
    /// # Errors
    /// Never; the file was read whole when opened.
    pub fn batch(&self, after: i64, limit: usize) -> anyhow::Result<Vec<DjangoAccount>> {
        let start = self.accounts.partition_point(|account| account.id <= after);
        Ok(self
            .accounts
            .iter()
            .skip(start)
            .take(limit)
            .cloned()
            .collect())
    }
}

/// One record of a dump.
#[derive(serde::Deserialize)]
struct Record {
    model: String,
    pk: Value,
    #[serde(default)]
    fields: Map<String, Value>,
}

/// Hands each record of a dump's array to a closure as it is read.
struct Records<F>(F);

impl<'de, F: FnMut(Record)> serde::de::DeserializeSeed<'de> for Records<F> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(Record)> serde::de::Visitor<'de> for Records<F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of dumpdata records")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut records: A) -> Result<(), A::Error> {
        while let Some(record) = records.next_element::<Record>()? {
            (self.0)(record);
        }
        Ok(())
    }
}

fn account(
    pk: i64,
    values: &Map<String, Value>,
    fields: &FieldNames,
) -> anyhow::Result<DjangoAccount> {
    let get = |field: &str| fields.name(field).and_then(|name| values.get(name));
    let text = |field: &str| -> anyhow::Result<String> {
        match get(field) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(text)) => Ok(text.clone()),
            Some(other) => anyhow::bail!("{field} is not text: {other}"),
        }
    };
    let flag = |field: &str| -> anyhow::Result<Option<bool>> {
        match get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(other) => anyhow::bail!("{field} is not a boolean: {other}"),
        }
    };
    let instant = |field: &str| -> anyhow::Result<Option<DateTime<Utc>>> {
        match get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(raw)) => parse_instant(raw)
                .map(Some)
                .ok_or_else(|| anyhow::anyhow!("{field} is not a date and time: {raw:?}")),
            Some(other) => anyhow::bail!("{field} is not a date and time: {other}"),
        }
    };
    Ok(DjangoAccount {
        id: pk,
        email: text("email")?,
        password: text("password")?,
        first_name: text("first_name")?,
        last_name: text("last_name")?,
        is_active: flag("is_active")?.unwrap_or(true),
        is_staff: flag("is_staff")?.unwrap_or(false),
        is_superuser: flag("is_superuser")?.unwrap_or(false),
        is_verified: flag("is_verified")?,
        date_joined: instant("date_joined")?
            .ok_or_else(|| anyhow::anyhow!("date_joined is missing"))?,
        last_login: instant("last_login")?,
    })
}

/// Django's JSON instants: RFC 3339 with `Z` or an offset (`USE_TZ = True`), or naive,
/// taken as UTC (`USE_TZ = False`).
fn parse_instant(raw: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        return Some(at.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
}

#[cfg(test)]
mod tests {
    use super::parse_instant;

    #[test]
    fn instants_read_as_django_writes_them() {
        for raw in [
            "2024-06-01T08:30:00Z",
            "2024-06-01T08:30:00.000Z",
            "2024-06-01T10:30:00+02:00",
            "2024-06-01T08:30:00",
        ] {
            assert_eq!(
                parse_instant(raw).map(|at| at.to_rfc3339()),
                Some("2024-06-01T08:30:00+00:00".to_owned()),
                "{raw}"
            );
        }
        assert_eq!(parse_instant("yesterday"), None);
    }
}
