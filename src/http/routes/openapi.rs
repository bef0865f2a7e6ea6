//! `GET /api/openapi.json`: the OpenAPI 3.1 document of this API.
//!
//! The document is written by hand (`src/http/openapi.json`) and served as written: a description
//! generated from the handlers could only say what their Rust types say, while clients need the
//! error codes, headers and roles that the types do not carry. What keeps it true are tests —
//! below, that it names exactly the routes the router serves; in `tests/api/openapi.rs`, that the
//! real server's responses validate against it; and the contract run (`ops/tests/contract.sh`).

use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;

/// The document, embedded in the binary.
pub const DOCUMENT: &str = include_str!("../openapi.json");

pub async fn document() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        DOCUMENT,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::DOCUMENT;
    use crate::http::route_table;

    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    fn document() -> Value {
        serde_json::from_str(DOCUMENT).expect("the OpenAPI document is JSON")
    }

    /// `(METHOD, path)` of every operation in the document.
    fn operations(document: &Value) -> BTreeSet<(String, String)> {
        let paths = document["paths"].as_object().expect("paths is an object");
        paths
            .iter()
            .flat_map(|(path, item)| {
                let item = item.as_object().expect("a path item is an object");
                item.keys()
                    .filter(|key| METHODS.contains(&key.as_str()))
                    .map(|method| (method.to_uppercase(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn document_describes_exactly_the_routes_served() {
        let served: BTreeSet<(String, String)> = route_table()
            .into_iter()
            .map(|(method, path)| (method.to_string(), path.to_owned()))
            .collect();
        let documented = operations(&document());

        let undocumented: Vec<_> = served.difference(&documented).collect();
        let not_served: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty() && not_served.is_empty(),
            "served but not in src/http/openapi.json: {undocumented:?}; \
             documented but not served: {not_served:?}"
        );
    }

    #[test]
    fn document_is_openapi_3_1_of_this_version() {
        let document = document();
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    }

    /// Every `$ref` points at something the document defines: a dangling one would make a
    /// schema validate anything, or nothing, depending on the tool.
    #[test]
    fn every_reference_resolves() {
        fn walk(root: &Value, value: &Value, dangling: &mut Vec<String>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(target)) = map.get("$ref") {
                        let resolved = target
                            .strip_prefix('#')
                            .and_then(|pointer| root.pointer(pointer));
                        if resolved.is_none() {
                            dangling.push(target.clone());
                        }
                    }
                    map.values().for_each(|v| walk(root, v, dangling));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(root, v, dangling)),
                _ => {}
            }
        }
        let document = document();
        let mut dangling = Vec::new();
        walk(&document, &document, &mut dangling);
        assert!(dangling.is_empty(), "dangling references: {dangling:?}");
    }
}
