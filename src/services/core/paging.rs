//! Listings read one row more than a page holds, to know whether another page follows.

use crate::domain::PageSize;

/// How many rows to read for a page of `size`: one more, which only says a next page exists.
pub(crate) fn rows_to_read(size: PageSize) -> i64 {
    i64::from(size.get()) + 1
}

/// The page of `rows` (read with [`rows_to_read`]) and the token of the next page, made from
/// the page's last row by `token_after`, if more rows followed.
pub(crate) fn one_page<T>(
    mut rows: Vec<T>,
    size: PageSize,
    token_after: impl FnOnce(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let limit = usize::try_from(size.get()).unwrap_or(usize::MAX);
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = if more {
        rows.last().map(token_after)
    } else {
        None
    };
    (rows, next)
}
