//! Lenient UUID parsing for path and query values (canonical, upper-case,
//! 32 hex digits, `urn:uuid:` and `{}` forms all accepted, as the reference
//! does). Each endpoint chooses its own 400 message.

use uuid::Uuid;

use crate::error::AppError;

/// Parses `raw` or fails with 400 `message`.
pub fn parse_uuid(raw: &str, message: &str) -> Result<Uuid, AppError> {
    Uuid::try_parse(raw.trim()).map_err(|_| AppError::bad_request(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_reference_forms() {
        let id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        for raw in [
            id.to_string(),
            id.to_uppercase(),
            id.replace('-', ""),
            format!("urn:uuid:{id}"),
            format!("{{{id}}}"),
        ] {
            assert!(parse_uuid(&raw, "x").is_ok(), "{raw}");
        }
        assert!(parse_uuid("nope", "Invalid").is_err());
    }
}
