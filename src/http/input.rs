//! Request input — JSON bodies and query strings — read into the request types, with every
//! refusal told in the API's words.
//!
//! serde's own messages are written for programmers: they name Rust types (`expected struct
//! SendBody with 2 elements`, `expected u32`), serde_json adds line and column, and axum's
//! rejections prefix their own wording. None of that means anything to a client, and a type name
//! tells an attacker more than it tells a user. Input is therefore read through one deserializer
//! of our own. Each request type asks it for what a field must be — a string, a whole number,
//! one of some names, an object — and it checks the value before any generated code sees it, so
//! every message is composed here from what was wanted and where (`text: expected a string`,
//! `role: must be one of admin, operator, viewer, auditor`), never passed through from serde.

use std::borrow::Cow;
use std::fmt;

use axum::http::StatusCode;
use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde_json::Value;

use super::error::ApiError;

/// Input that does not fit its request type: where, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    origin: Origin,
    /// The field as a path from the top (`metadata`, `items[2].name`); empty for the input as a
    /// whole or for a problem that names its own field.
    path: String,
    problem: Problem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Body,
    Query,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    NotAnObject,
    Expected(Cow<'static, str>),
    OneOf(&'static [&'static str]),
    UnknownField {
        name: String,
        allowed: &'static [&'static str],
    },
    MissingField(&'static str),
    Repeated(&'static str),
    /// Refused by a type's own rules, which may word things for programmers: not repeated.
    NotAllowed,
}

/// Refuses a body that is not a JSON object: every request body of this API is one.
pub fn require_object(value: &Value) -> Result<(), InputError> {
    if value.is_object() {
        Ok(())
    } else {
        Err(InputError::new(Origin::Body, Problem::NotAnObject))
    }
}

/// Reads a JSON object into `T`.
pub fn from_json<T: DeserializeOwned>(value: &Value) -> Result<T, InputError> {
    require_object(value)?;
    T::deserialize(Input(Node::Json(value)))
}

/// Reads a query string (`a=1&b=x`, percent-encoded) into `T`. Parameters `T` does not name are
/// ignored; one given twice is refused rather than silently taking either value.
pub fn from_query<T: DeserializeOwned>(query: &str) -> Result<T, InputError> {
    T::deserialize(Input(Node::Query(query))).map_err(|mut error| {
        error.origin = Origin::Query;
        error
    })
}

impl InputError {
    fn new(origin: Origin, problem: Problem) -> Self {
        Self {
            origin,
            path: String::new(),
            problem,
        }
    }

    fn expected(what: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Origin::Body, Problem::Expected(what.into()))
    }

    /// The error as seen from the container holding it at `key`.
    fn within_key(mut self, key: &str) -> Self {
        self.path = match self.path.as_str() {
            "" => key.to_owned(),
            inner if inner.starts_with('[') => format!("{key}{inner}"),
            inner => format!("{key}.{inner}"),
        };
        self
    }

    /// The error as seen from the array holding it at `index`.
    fn within_index(mut self, index: usize) -> Self {
        self.path = match self.path.as_str() {
            "" => format!("[{index}]"),
            inner if inner.starts_with('[') => format!("[{index}]{inner}"),
            inner => format!("[{index}].{inner}"),
        };
        self
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The field the message is about: problems about one named field of an object name it
        // in their own words, so they are placed at the object.
        let field = match &self.problem {
            Problem::Repeated(name) if self.path.is_empty() => Cow::Borrowed(*name),
            Problem::Repeated(name) => Cow::Owned(format!("{}.{name}", self.path)),
            _ => Cow::Borrowed(self.path.as_str()),
        };
        match (self.origin, field.is_empty()) {
            (Origin::Query, false) => write!(f, "query parameter {field}: ")?,
            (Origin::Body, false) => write!(f, "{field}: ")?,
            (_, true) => {}
        }
        match &self.problem {
            Problem::NotAnObject => f.write_str("the body must be a JSON object"),
            Problem::Expected(what) => write!(f, "expected {what}"),
            Problem::OneOf(names) => write!(f, "must be one of {}", names.join(", ")),
            Problem::UnknownField { name, allowed: [] } => {
                write!(f, "unknown field `{name}`; no fields are allowed")
            }
            Problem::UnknownField { name, allowed } => {
                write!(f, "unknown field `{name}`; allowed: {}", allowed.join(", "))
            }
            Problem::MissingField(name) => write!(f, "missing field `{name}`"),
            Problem::Repeated(_) => f.write_str("given more than once"),
            Problem::NotAllowed => f.write_str("this value is not allowed"),
        }
    }
}

impl std::error::Error for InputError {}

/// What generated code reports lands here. Everything that carries a type's wording is reduced
/// to a message of ours.
impl de::Error for InputError {
    fn custom<T: fmt::Display>(_message: T) -> Self {
        Self::new(Origin::Body, Problem::NotAllowed)
    }

    fn invalid_type(_: de::Unexpected<'_>, _: &dyn de::Expected) -> Self {
        Self::new(Origin::Body, Problem::NotAllowed)
    }

    fn invalid_value(_: de::Unexpected<'_>, _: &dyn de::Expected) -> Self {
        Self::new(Origin::Body, Problem::NotAllowed)
    }

    fn invalid_length(_: usize, _: &dyn de::Expected) -> Self {
        Self::new(Origin::Body, Problem::NotAllowed)
    }

    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
        Self::new(Origin::Body, Problem::OneOf(expected))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::new(
            Origin::Body,
            Problem::UnknownField {
                name: field.to_owned(),
                allowed: expected,
            },
        )
    }

    fn missing_field(field: &'static str) -> Self {
        Self::new(Origin::Body, Problem::MissingField(field))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self::new(Origin::Body, Problem::Repeated(field))
    }
}

impl From<InputError> for ApiError {
    fn from(error: InputError) -> Self {
        match error.origin {
            Origin::Body => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                error.to_string(),
            ),
            Origin::Query => ApiError::invalid_request(error.to_string()),
        }
    }
}

/// One value of the input: part of a parsed JSON body, a query parameter's text (which stands
/// for a string, a number or a boolean as the field asks), or a whole query string.
enum Node<'de> {
    Json(&'de Value),
    Text(Cow<'de, str>),
    Query(&'de str),
}

struct Input<'de>(Node<'de>);

impl<'de> Input<'de> {
    fn text(&self) -> Option<&str> {
        match &self.0 {
            Node::Json(Value::String(s)) => Some(s),
            Node::Text(s) => Some(s),
            _ => None,
        }
    }

    fn visit_text<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        match self.0 {
            Node::Json(Value::String(s)) => visitor.visit_borrowed_str(s),
            Node::Text(Cow::Borrowed(s)) => visitor.visit_borrowed_str(s),
            Node::Text(Cow::Owned(s)) => visitor.visit_string(s),
            _ => Err(InputError::expected("a string")),
        }
    }

    fn unsigned(&self, max: u64) -> Result<u64, InputError> {
        let n = match &self.0 {
            Node::Json(Value::Number(n)) => n.as_u64(),
            Node::Text(s) => s.parse().ok(),
            _ => None,
        };
        match n {
            Some(n) if n <= max => Ok(n),
            Some(_) => Err(InputError::expected(format!("a whole number up to {max}"))),
            None => Err(InputError::expected("a whole number")),
        }
    }

    fn signed(&self, min: i64, max: i64) -> Result<i64, InputError> {
        let n = match &self.0 {
            Node::Json(Value::Number(n)) => n.as_i64(),
            Node::Text(s) => s.parse().ok(),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            Some(_) => Err(InputError::expected(format!(
                "an integer from {min} to {max}"
            ))),
            None => Err(InputError::expected("an integer")),
        }
    }
}

macro_rules! unsigned {
    ($($method:ident => $visit:ident: $ty:ty),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
            let n = self.unsigned(<$ty>::MAX as u64)?;
            visitor.$visit(n as $ty)
        }
    )*};
}

macro_rules! signed {
    ($($method:ident => $visit:ident: $ty:ty),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
            let n = self.signed(<$ty>::MIN as i64, <$ty>::MAX as i64)?;
            visitor.$visit(n as $ty)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Input<'de> {
    type Error = InputError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        match self.0 {
            Node::Json(value) => match value {
                Value::Null => visitor.visit_unit(),
                Value::Bool(b) => visitor.visit_bool(*b),
                Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                    (Some(u), _, _) => visitor.visit_u64(u),
                    (_, Some(i), _) => visitor.visit_i64(i),
                    (_, _, Some(f)) => visitor.visit_f64(f),
                    _ => Err(InputError::new(Origin::Body, Problem::NotAllowed)),
                },
                Value::String(s) => visitor.visit_borrowed_str(s),
                Value::Array(items) => visitor.visit_seq(Items {
                    items: items.iter(),
                    index: 0,
                }),
                Value::Object(entries) => visitor.visit_map(Entries::Object {
                    entries: entries.iter(),
                    value: None,
                }),
            },
            node @ Node::Text(_) => Input(node).visit_text(visitor),
            Node::Query(query) => visitor.visit_map(Entries::Query {
                pairs: form_urlencoded::parse(query.as_bytes()),
                value: None,
            }),
        }
    }

    unsigned!(
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64
    );

    signed!(
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64
    );

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        let n = match &self.0 {
            Node::Json(Value::Number(n)) => n.as_f64(),
            Node::Text(s) => s.parse::<f64>().ok().filter(|n| n.is_finite()),
            _ => None,
        };
        match n {
            Some(n) => visitor.visit_f64(n),
            None => Err(InputError::expected("a number")),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        match &self.0 {
            Node::Json(Value::Bool(b)) => visitor.visit_bool(*b),
            Node::Text(s) if s == "true" => visitor.visit_bool(true),
            Node::Text(s) if s == "false" => visitor.visit_bool(false),
            _ => Err(InputError::expected("true or false")),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        self.visit_text(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        self.visit_text(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        self.visit_text(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        self.visit_text(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        self.deserialize_any(visitor)
    }

    /// A query parameter that is present is never "none": `?archived=` is an empty value.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        match self.0 {
            Node::Json(Value::Null) => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        match self.0 {
            Node::Json(Value::Null) => visitor.visit_unit(),
            _ => Err(InputError::expected("null")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, InputError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, InputError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        match self.0 {
            Node::Json(Value::Array(items)) => visitor.visit_seq(Items {
                items: items.iter(),
                index: 0,
            }),
            _ => Err(InputError::expected("an array")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, InputError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, InputError> {
        self.deserialize_seq(visitor)
    }

    /// Only an object (or a query string) fills a map or a struct: serde would also take an
    /// array for a struct, field by field, which no client means.
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        match self.0 {
            node @ (Node::Json(Value::Object(_)) | Node::Query(_)) => {
                Input(node).deserialize_any(visitor)
            }
            _ => Err(InputError::expected("an object")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, InputError> {
        self.deserialize_map(visitor)
    }

    /// Only unit variants are ever asked for: a name from the list.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, InputError> {
        match self.text() {
            Some(name) if variants.contains(&name) => {
                let name: StrDeserializer<'_, InputError> = name.into_deserializer();
                visitor.visit_enum(name)
            }
            _ => Err(InputError::new(Origin::Body, Problem::OneOf(variants))),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        visitor.visit_unit()
    }

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, InputError> {
        self.deserialize_u64(visitor)
    }
}

/// The elements of a JSON array; an error inside one is placed at its index.
struct Items<'de> {
    items: std::slice::Iter<'de, Value>,
    index: usize,
}

impl<'de> de::SeqAccess<'de> for Items<'de> {
    type Error = InputError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, InputError> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let index = self.index;
        self.index += 1;
        seed.deserialize(Input(Node::Json(item)))
            .map(Some)
            .map_err(|e| e.within_index(index))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// The members of a JSON object, or the parameters of a query string; an error inside a value is
/// placed at its key.
enum Entries<'de> {
    Object {
        entries: serde_json::map::Iter<'de>,
        value: Option<(&'de str, &'de Value)>,
    },
    Query {
        pairs: form_urlencoded::Parse<'de>,
        value: Option<(Cow<'de, str>, Cow<'de, str>)>,
    },
}

impl<'de> de::MapAccess<'de> for Entries<'de> {
    type Error = InputError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, InputError> {
        let key = match self {
            Entries::Object { entries, value } => entries.next().map(|(key, item)| {
                *value = Some((key.as_str(), item));
                Cow::Borrowed(key.as_str())
            }),
            Entries::Query { pairs, value } => pairs.next().map(|(key, text)| {
                *value = Some((key.clone(), text));
                key
            }),
        };
        match key {
            Some(key) => seed.deserialize(Input(Node::Text(key))).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, InputError> {
        match self {
            Entries::Object { value, .. } => {
                let (key, item) = value
                    .take()
                    .ok_or_else(|| InputError::new(Origin::Body, Problem::NotAllowed))?;
                seed.deserialize(Input(Node::Json(item)))
                    .map_err(|e| e.within_key(key))
            }
            Entries::Query { value, .. } => {
                let (key, text) = value
                    .take()
                    .ok_or_else(|| InputError::new(Origin::Body, Problem::NotAllowed))?;
                seed.deserialize(Input(Node::Text(text)))
                    .map_err(|e| e.within_key(&key))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::{Map, json};

    use super::*;
    use crate::domain::chat::NewChat;
    use crate::domain::cursor::Order;
    use crate::domain::role::Role;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        text: String,
        metadata: Option<Map<String, Value>>,
        count: Option<u32>,
        role: Option<Role>,
        tags: Option<Vec<String>>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Params {
        limit: Option<usize>,
        archived: Option<bool>,
        #[serde(default)]
        order: Order,
        cursor: Option<String>,
    }

    fn body_error(value: Value) -> String {
        from_json::<Body>(&value).unwrap_err().to_string()
    }

    fn query_error(query: &str) -> String {
        from_query::<Params>(query).unwrap_err().to_string()
    }

    #[test]
    fn body_messages_name_the_field_and_what_it_must_be() {
        let cases = [
            (json!({"text": 5}), "text: expected a string"),
            (
                json!({"text": "a", "metadata": [1]}),
                "metadata: expected an object",
            ),
            (
                json!({"text": "a", "count": -1}),
                "count: expected a whole number",
            ),
            (
                json!({"text": "a", "count": 1.5}),
                "count: expected a whole number",
            ),
            (
                json!({"text": "a", "count": 5_000_000_000_u64}),
                "count: expected a whole number up to 4294967295",
            ),
            (
                json!({"text": "a", "role": "root"}),
                "role: must be one of admin, operator, viewer, auditor",
            ),
            (
                json!({"text": "a", "role": 1}),
                "role: must be one of admin, operator, viewer, auditor",
            ),
            (
                json!({"text": "a", "tags": ["x", 2]}),
                "tags[1]: expected a string",
            ),
            (json!({"text": "a", "tags": "x"}), "tags: expected an array"),
            (json!({"metadata": {}}), "missing field `text`"),
            (
                json!({"text": "a", "foo": 1}),
                "unknown field `foo`; allowed: text, metadata, count, role, tags",
            ),
            (json!([1, 2]), "the body must be a JSON object"),
            (json!("text"), "the body must be a JSON object"),
            (json!(null), "the body must be a JSON object"),
        ];
        for (body, message) in cases {
            assert_eq!(body_error(body.clone()), message, "{body}");
        }
    }

    #[test]
    fn nested_paths_are_dotted() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            inner: Vec<Inner>,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Inner {
            name: String,
        }
        let error = from_json::<Outer>(&json!({"inner": [{"name": "a"}, {"name": true}]}));
        assert_eq!(
            error.unwrap_err().to_string(),
            "inner[1].name: expected a string"
        );
        let error = from_json::<Outer>(&json!({"inner": [{"name": "a"}, {}]}));
        assert_eq!(
            error.unwrap_err().to_string(),
            "inner[1]: missing field `name`"
        );
    }

    #[test]
    fn valid_bodies_are_read_exactly() {
        let body: Body = from_json(&json!({
            "text": "hello",
            "metadata": {"n": 1, "x": [true, null, -2, 1.5, "s"]},
            "count": 7,
            "role": "auditor",
        }))
        .unwrap();
        assert_eq!(body.text, "hello");
        assert_eq!(
            Value::Object(body.metadata.unwrap()),
            json!({"n": 1, "x": [true, null, -2, 1.5, "s"]})
        );
        assert_eq!(body.count, Some(7));
        assert_eq!(body.role, Some(Role::Auditor));
        let chat: NewChat = from_json(&json!({"id": "ops", "title": null})).unwrap();
        assert_eq!(chat.id.as_deref(), Some("ops"));
        assert_eq!(chat.title, None);
    }

    #[test]
    fn query_messages_name_the_parameter() {
        assert_eq!(
            query_error("limit=5&limit=6"),
            "query parameter limit: given more than once"
        );
        assert_eq!(
            query_error("limit=ten"),
            "query parameter limit: expected a whole number"
        );
        assert_eq!(
            query_error("limit=-1"),
            "query parameter limit: expected a whole number"
        );
        assert_eq!(
            query_error("archived=yes"),
            "query parameter archived: expected true or false"
        );
        assert_eq!(
            query_error("order=sideways"),
            "query parameter order: must be one of asc, desc"
        );
    }

    #[test]
    fn queries_are_decoded_and_typed() {
        let params: Params =
            from_query("limit=20&archived=true&order=desc&cursor=a%2Bb&x=1&x=2").unwrap();
        assert_eq!(
            params,
            Params {
                limit: Some(20),
                archived: Some(true),
                order: Order::Desc,
                cursor: Some("a+b".into()),
            }
        );
        let empty: Params = from_query("").unwrap();
        assert_eq!(empty.limit, None);
        assert_eq!(empty.order, Order::Asc);
    }

    #[test]
    fn no_message_speaks_rust() {
        let messages = [
            body_error(json!([1, 2])),
            body_error(json!({"text": [1]})),
            body_error(json!({"text": "a", "role": {"admin": 1}})),
            body_error(json!({"text": "a", "metadata": "m"})),
            from_json::<NewChat>(&json!({"id": 1}))
                .unwrap_err()
                .to_string(),
            query_error("limit=1.5"),
            query_error("order="),
        ];
        for message in messages {
            for word in [
                "struct ", "enum ", "line ", "column ", "::", "Failed", "u32", "usize",
            ] {
                assert!(!message.contains(word), "{message:?} contains {word:?}");
            }
        }
    }
}
