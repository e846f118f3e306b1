//! How the typed values that cross the storage seam are written to and read from a column.
//! What the database gives back was parsed when it was written, so it is trusted here.

use diesel::{
    backend::Backend,
    deserialize::{self, FromSql},
    serialize::{self, Output, ToSql},
    sql_types::{BigInt, Text},
};

use crate::domain::{Email, FactorId, RefreshTokenHash, SessionId, UserId};

impl<DB> ToSql<BigInt, DB> for UserId
where
    DB: Backend,
    i64: ToSql<BigInt, DB>,
{
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
        <i64 as ToSql<BigInt, DB>>::to_sql(self.as_i64(), out)
    }
}

impl<DB> FromSql<BigInt, DB> for UserId
where
    DB: Backend,
    i64: FromSql<BigInt, DB>,
{
    fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
        <i64 as FromSql<BigInt, DB>>::from_sql(bytes).map(Self::from_trusted)
    }
}

/// Text columns holding one of our string newtypes.
macro_rules! text_column {
    ($($name:ty),* $(,)?) => {$(
        impl<DB> ToSql<Text, DB> for $name
        where
            DB: Backend,
            str: ToSql<Text, DB>,
        {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
                <str as ToSql<Text, DB>>::to_sql(self.as_str(), out)
            }
        }

        impl<DB> FromSql<Text, DB> for $name
        where
            DB: Backend,
            String: FromSql<Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
                <String as FromSql<Text, DB>>::from_sql(bytes).map(Self::from_trusted)
            }
        }
    )*};
}

text_column!(Email, SessionId, FactorId, RefreshTokenHash);
