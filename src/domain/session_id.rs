//! The id of a session, as access tokens carry it in `sid`.

use super::random_id::random_id;

random_id!(
    /// A random session id (a UUID in its hyphenated form), carried in tokens as `sid`.
    SessionId,
    "is not a session id"
);

#[cfg(test)]
mod tests {
    use super::SessionId;

    #[test]
    fn generated_ids_parse_back_and_garbage_does_not() {
        let id = SessionId::generate();
        assert_eq!(SessionId::parse(id.as_str()).unwrap(), id);
        assert!(SessionId::parse("s1").is_err());
        assert!(SessionId::parse("").is_err());
    }
}
