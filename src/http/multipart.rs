//! Bodies that come in two forms, chosen by `Content-Type`: JSON (today's
//! contract, decoded by [`LenientJson`]) or `multipart/form-data` (the
//! earlier client generation). Multipart bodies are parsed by `multer` (the
//! parser behind axum's `Multipart`) as a stream: text fields are read into
//! small capped strings, file fields are handed out as byte streams, and
//! the whole body is counted against the route's own limit before anything
//! downstream sees its bytes.
//!
//! axum's `Multipart` extractor is not used directly because it applies the
//! route group's JSON body limit (100 KiB); here each endpoint names its
//! own limit through the `LIMIT` parameter.

use std::collections::HashMap;

use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::json::LenientJson;
use crate::error::AppError;
use crate::infra::storage::{BodyError, ByteStream};

/// Longest text field of a form (names, bios, id lists are far shorter).
pub const MAX_TEXT_FIELD: usize = 64 * 1024;
/// Most text fields a form may carry.
const MAX_TEXT_FIELDS: usize = 64;

/// A request body as JSON or as a multipart form of at most `LIMIT` bytes.
pub enum JsonOrForm<T, const LIMIT: usize> {
    Json(T),
    Form(Form),
}

fn invalid_form() -> AppError {
    AppError::bad_request("Invalid multipart form")
}

/// The boundary when the body is `multipart/form-data`; `None` for any
/// other (or no) Content-Type, which is decoded as JSON.
fn form_boundary(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(None);
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return Ok(None);
    }
    multer::parse_boundary(ct)
        .map(Some)
        .map_err(|_| invalid_form())
}

impl<S, T, const LIMIT: usize> FromRequest<S> for JsonOrForm<T, LIMIT>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Some(boundary) = form_boundary(req.headers())? else {
            let LenientJson(body) = LenientJson::<T>::from_request(req, state).await?;
            return Ok(Self::Json(body));
        };
        // A declared length over the limit is refused before reading.
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > LIMIT as u64) {
            return Err(AppError::payload_too_large());
        }
        let limits = multer::SizeLimit::new().whole_stream(LIMIT as u64);
        let inner = multer::Multipart::with_constraints(
            req.into_body().into_data_stream(),
            boundary,
            multer::Constraints::new().size_limit(limits),
        );
        Ok(Self::Form(Form { inner }))
    }
}

fn form_error(e: multer::Error) -> AppError {
    match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            AppError::payload_too_large()
        }
        _ => invalid_form(),
    }
}

fn body_error(e: multer::Error) -> BodyError {
    match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            BodyError::TooLarge
        }
        other => BodyError::Aborted(other.to_string()),
    }
}

/// A multipart body being read, part by part.
pub struct Form {
    inner: multer::Multipart<'static>,
}

/// One part of a form: a text field, or a file (a part with a file name).
pub enum Part {
    Text { name: String, value: String },
    File(Box<FilePart>),
}

/// A file part whose bytes have not been read yet.
pub struct FilePart {
    pub name: String,
    /// The client's file name (may be empty).
    pub file_name: String,
    /// The part's Content-Type, when it has one.
    pub content_type: Option<String>,
    field: multer::Field<'static>,
}

impl FilePart {
    /// The part's bytes as they arrive; the form's body limit ends the
    /// stream with [`BodyError::TooLarge`].
    pub fn into_stream(self) -> ByteStream {
        self.field.map(|r| r.map_err(body_error)).boxed()
    }
}

impl Form {
    /// The next part, `None` at the end of the body. A file part not read
    /// before the next call is skipped (its bytes still count).
    pub async fn next_part(&mut self) -> Result<Option<Part>, AppError> {
        let Some(mut field) = self.inner.next_field().await.map_err(form_error)? else {
            return Ok(None);
        };
        let name = field.name().unwrap_or_default().to_string();
        if let Some(file_name) = field.file_name() {
            return Ok(Some(Part::File(Box::new(FilePart {
                name,
                file_name: file_name.to_string(),
                content_type: field.content_type().map(|m| m.to_string()),
                field,
            }))));
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(form_error)? {
            if value.len() + chunk.len() > MAX_TEXT_FIELD {
                return Err(AppError::bad_request(format!("Field {name} is too long")));
            }
            value.extend_from_slice(&chunk);
        }
        let value = String::from_utf8(value).map_err(|_| invalid_form())?;
        Ok(Some(Part::Text { name, value }))
    }
}

/// The text fields of a form; a repeated field keeps its first value (as
/// the reference's form reader does).
#[derive(Debug, Default)]
pub struct TextFields(HashMap<String, String>);

impl TextFields {
    /// Records a field; refuses forms with too many fields.
    pub fn insert(&mut self, name: String, value: String) -> Result<(), AppError> {
        if self.0.len() >= MAX_TEXT_FIELDS && !self.0.contains_key(&name) {
            return Err(AppError::bad_request("Too many form fields"));
        }
        self.0.entry(name).or_insert(value);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    /// A boolean field in the spellings Go's `strconv.ParseBool` accepts;
    /// an empty value is absent, anything else a 400.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, AppError> {
        match self.get(name).map(str::trim) {
            None | Some("") => Ok(None),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(Some(true)),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(Some(false)),
            Some(_) => Err(AppError::bad_request(format!(
                "Field {name} must be true or false"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_only_for_form_data() {
        let mut h = HeaderMap::new();
        assert_eq!(form_boundary(&h).unwrap(), None);
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert_eq!(form_boundary(&h).unwrap(), None);
        h.insert(
            header::CONTENT_TYPE,
            "Multipart/Form-Data; boundary=abc".parse().unwrap(),
        );
        assert_eq!(form_boundary(&h).unwrap().as_deref(), Some("abc"));
        h.insert(header::CONTENT_TYPE, "multipart/form-data".parse().unwrap());
        assert!(form_boundary(&h).is_err());
    }

    #[test]
    fn fields_keep_the_first_value_and_parse_booleans() {
        let mut f = TextFields::default();
        f.insert("a".into(), "true".into()).unwrap();
        f.insert("a".into(), "false".into()).unwrap();
        f.insert("b".into(), "".into()).unwrap();
        f.insert("c".into(), "yes".into()).unwrap();
        assert_eq!(f.bool("a").unwrap(), Some(true));
        assert_eq!(f.bool("b").unwrap(), None);
        assert_eq!(f.bool("missing").unwrap(), None);
        assert!(f.bool("c").is_err());
        for i in 0..MAX_TEXT_FIELDS {
            let _ = f.insert(format!("f{i}"), String::new());
        }
        assert!(f.insert("one-more".into(), String::new()).is_err());
    }
}
