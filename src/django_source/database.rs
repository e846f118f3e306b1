//! The Django deployment's own Postgres database, read in id order a batch at a time.

use anyhow::Context;
use chrono::NaiveDateTime;
use diesel::{
    QueryableByName,
    sql_types::{BigInt, Bool, Nullable, Text, Timestamp},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use secrecy::{ExposeSecret, SecretString};

use super::FieldNames;
use crate::services::django_import::DjangoAccount;

/// A connection to the Django database and the query that reads its users.
pub struct DatabaseSource {
    conn: AsyncPgConnection,
    query: String,
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    email: String,
    #[diesel(sql_type = Text)]
    password: String,
    #[diesel(sql_type = Text)]
    first_name: String,
    #[diesel(sql_type = Text)]
    last_name: String,
    #[diesel(sql_type = Bool)]
    is_active: bool,
    #[diesel(sql_type = Bool)]
    is_staff: bool,
    #[diesel(sql_type = Bool)]
    is_superuser: bool,
    #[diesel(sql_type = Nullable<Bool>)]
    is_verified: Option<bool>,
    #[diesel(sql_type = Timestamp)]
    date_joined: NaiveDateTime,
    #[diesel(sql_type = Nullable<Timestamp>)]
    last_login: Option<NaiveDateTime>,
}

impl DatabaseSource {
    /// Connects to the Django database at `url` and prepares to read `table`.
    ///
    /// # Errors
    /// When a name is not an identifier or the database cannot be reached (the error never
    /// holds the URL).
    pub async fn open(url: &SecretString, table: &str, fields: FieldNames) -> anyhow::Result<Self> {
        let quoted_table = identifier(table)?;
        let mut conn = AsyncPgConnection::establish(url.expose_secret())
            .await
            .map_err(|e| anyhow::anyhow!("connecting to the Django database: {e}"))?;
        // Instants come out in UTC whether the columns have a time zone or not.
        conn.batch_execute("SET TIME ZONE 'UTC'")
            .await
            .context("setting the session time zone")?;
        let columns: Vec<Column> = diesel::sql_query(
            "SELECT attname::text AS name FROM pg_attribute \
             WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
        )
        .bind::<Text, _>(&quoted_table)
        .load(&mut conn)
        .await
        .context("reading the user table's columns")?;
        let columns: Vec<String> = columns.into_iter().map(|column| column.name).collect();
        let query = select(table, &fields.present_in(&columns))?;
        Ok(Self { conn, query })
    }

    /// Up to `limit` accounts with ids above `after`.
    ///
    /// # Errors
    /// When the query fails (a wrong table or column name, most likely).
    pub async fn batch(&mut self, after: i64, limit: usize) -> anyhow::Result<Vec<DjangoAccount>> {
        let rows: Vec<Row> = diesel::sql_query(&self.query)
            .bind::<BigInt, _>(after)
            .bind::<BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX))
            .load(&mut self.conn)
            .await
            .context("reading users from the Django database (check --table and --field)")?;
        Ok(rows
            .into_iter()
            .map(|row| DjangoAccount {
                id: row.id,
                email: row.email,
                password: row.password,
                first_name: row.first_name,
                last_name: row.last_name,
                is_active: row.is_active,
                is_staff: row.is_staff,
                is_superuser: row.is_superuser,
                is_verified: row.is_verified,
                date_joined: row.date_joined.and_utc(),
                last_login: row.last_login.map(|at| at.and_utc()),
            })
            .collect())
    }
}

#[derive(QueryableByName)]
struct Column {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Jti {
    #[diesel(sql_type = Text)]
    jti: String,
}

#[derive(QueryableByName)]
struct Present {
    #[diesel(sql_type = Bool)]
    present: bool,
}

impl DatabaseSource {
    /// The `jti`s of the refresh tokens simplejwt's blacklist holds (none without its
    /// tables).
    ///
    /// # Errors
    /// When the query fails.
    pub async fn blacklisted_jtis(&mut self) -> anyhow::Result<Vec<String>> {
        let present: Present = diesel::sql_query(
            "SELECT to_regclass('token_blacklist_blacklistedtoken') IS NOT NULL AS present",
        )
        .get_result(&mut self.conn)
        .await
        .context("looking for simplejwt's blacklist")?;
        if !present.present {
            return Ok(Vec::new());
        }
        let jtis: Vec<Jti> = diesel::sql_query(
            "SELECT o.jti AS jti FROM token_blacklist_blacklistedtoken b \
             JOIN token_blacklist_outstandingtoken o ON o.id = b.token_id",
        )
        .load(&mut self.conn)
        .await
        .context("reading simplejwt's blacklist")?;
        Ok(jtis.into_iter().map(|row| row.jti).collect())
    }
}

/// The batch query over `table` with the model's column names; a field the model lacks
/// reads as empty, false or null.
fn select(table: &str, fields: &FieldNames) -> anyhow::Result<String> {
    let column = |field: &str| fields.name(field).map(identifier).transpose();
    let or = |field: &str, cast: &str, absent: &str| -> anyhow::Result<String> {
        Ok(match column(field)? {
            Some(name) => format!("CAST({name} AS {cast}) AS {field}"),
            None => format!("CAST({absent} AS {cast}) AS {field}"),
        })
    };
    let text = |field: &str| -> anyhow::Result<String> {
        Ok(match column(field)? {
            Some(name) => format!("COALESCE(CAST({name} AS TEXT), '') AS {field}"),
            None => format!("'' AS {field}"),
        })
    };
    let id = column("id")?.ok_or_else(|| anyhow::anyhow!("the id field is required"))?;
    let selected = [
        format!("CAST({id} AS BIGINT) AS id"),
        text("email")?,
        text("password")?,
        text("first_name")?,
        text("last_name")?,
        or("is_active", "BOOLEAN", "TRUE")?,
        or("is_staff", "BOOLEAN", "FALSE")?,
        or("is_superuser", "BOOLEAN", "FALSE")?,
        or("is_verified", "BOOLEAN", "NULL")?,
        or("date_joined", "TIMESTAMP", "NULL")?,
        or("last_login", "TIMESTAMP", "NULL")?,
    ];
    Ok(format!(
        "SELECT {} FROM {} WHERE {id} > $1 ORDER BY {id} LIMIT $2",
        selected.join(", "),
        identifier(table)?
    ))
}

/// A table or column name, quoted for Postgres (`schema.table` allowed); only plain
/// identifiers are accepted, so nothing from a flag can change the statement.
fn identifier(name: &str) -> anyhow::Result<String> {
    let parts: Vec<&str> = name.split('.').collect();
    let plain = |part: &&str| {
        part.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    anyhow::ensure!(
        !parts.is_empty() && parts.len() <= 2 && parts.iter().all(plain),
        "{name:?} is not a table or column name"
    );
    Ok(parts
        .iter()
        .map(|part| format!("\"{part}\""))
        .collect::<Vec<_>>()
        .join("."))
}

#[cfg(test)]
mod tests {
    use super::{FieldNames, identifier, select};

    #[test]
    fn names_are_quoted_and_anything_else_refused() {
        assert_eq!(identifier("auth_user").unwrap(), "\"auth_user\"");
        assert_eq!(
            identifier("public.auth_user").unwrap(),
            "\"public\".\"auth_user\""
        );
        for bad in ["", "a;drop", "a b", "\"x\"", "a.b.c", "1st"] {
            assert!(identifier(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_custom_model_reads_its_own_columns() {
        let fields = FieldNames::with_overrides(&[
            "email=email_address".into(),
            "first_name=".into(),
            "is_verified=email_verified".into(),
        ])
        .unwrap();
        let query = select("accounts_user", &fields).unwrap();
        assert!(query.contains("COALESCE(CAST(\"email_address\" AS TEXT), '') AS email"));
        assert!(query.contains("'' AS first_name"));
        assert!(query.contains("CAST(\"email_verified\" AS BOOLEAN) AS is_verified"));
        assert!(
            query.ends_with("FROM \"accounts_user\" WHERE \"id\" > $1 ORDER BY \"id\" LIMIT $2")
        );
        assert!(FieldNames::with_overrides(&["password=".into()]).is_err());
        assert!(FieldNames::with_overrides(&["colour=red".into()]).is_err());
    }
}
