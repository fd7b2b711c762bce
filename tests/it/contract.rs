//! Contract conformance: the OpenAPI document the server generates from its
//! handler annotations is compared with the reference contract
//! (`docs/contract/swagger.json`, a copy of `shared/contract/swagger.json`).
//! Every path and method, every query/path parameter and request field (name
//! and type), and every field of the 200 response's `data` must be present.
//! Differences are listed by name.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::harness::{json, TestApp};

/// `{chatID}` and `{id}` name the same slot: compare templates shape-only.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

/// Resolves `$ref`s and `allOf`s into one object schema (properties merged).
fn resolve(schema: &Value, defs: &Value, depth: usize) -> Value {
    if depth > 8 {
        return Value::Null;
    }
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or_default();
        return resolve(&defs[name], defs, depth + 1);
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        let mut props = serde_json::Map::new();
        let mut ty = Value::Null;
        for part in all {
            let r = resolve(part, defs, depth + 1);
            if let Some(p) = r.get("properties").and_then(Value::as_object) {
                for (k, v) in p {
                    props.insert(k.clone(), v.clone());
                }
            }
            if ty.is_null() {
                ty = r.get("type").cloned().unwrap_or(Value::Null);
            }
        }
        return serde_json::json!({"type": if ty.is_null() { Value::from("object") } else { ty }, "properties": props});
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        // Option<T> in utoipa: oneOf [null, T].
        if let Some(non_null) = one
            .iter()
            .find(|s| s.get("type") != Some(&Value::from("null")))
        {
            return resolve(non_null, defs, depth + 1);
        }
    }
    schema.clone()
}

/// The JSON type of a schema ("string", "integer", ...), ignoring nullability.
fn type_of(schema: &Value, defs: &Value) -> String {
    let s = resolve(schema, defs, 0);
    match s.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("any")
            .to_string(),
        _ if s.get("properties").is_some() => "object".into(),
        _ => "any".into(),
    }
}

/// Numbers: the reference says "integer" where we may say "integer"/"number".
fn compatible(ours: &str, theirs: &str) -> bool {
    ours == theirs || theirs == "any" || ours == "any" || (theirs == "number" && ours == "integer")
}

fn props(schema: &Value, defs: &Value) -> serde_json::Map<String, Value> {
    resolve(schema, defs, 0)
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// The `data` schema of a 200 response (Swagger 2 or OpenAPI 3 style).
fn data_schema(response_schema: &Value, defs: &Value) -> Option<Value> {
    let p = props(response_schema, defs);
    p.get("data").cloned()
}

/// Lists every difference between the reference and the served document.
pub fn differences(reference: &Value, served: &Value) -> Vec<String> {
    let rdefs = &reference["definitions"];
    let sdefs = &served["components"]["schemas"];
    let mut diffs = Vec::new();
    let served_paths = served["paths"].as_object().cloned().unwrap_or_default();
    let served_by_shape: std::collections::HashMap<String, &Value> =
        served_paths.iter().map(|(p, v)| (shape(p), v)).collect();
    let ref_paths = reference["paths"].as_object().cloned().unwrap_or_default();
    for (path, item) in &ref_paths {
        let Some(ours_item) = served_by_shape.get(&shape(path)) else {
            diffs.push(format!("missing path {path}"));
            continue;
        };
        for (method, op) in item.as_object().cloned().unwrap_or_default() {
            let Some(ours) = ours_item.get(&method) else {
                diffs.push(format!(
                    "missing operation {} {path}",
                    method.to_uppercase()
                ));
                continue;
            };
            let label = format!("{} {path}", method.to_uppercase());
            let our_params: Vec<&Value> = ours["parameters"]
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            for p in op["parameters"].as_array().cloned().unwrap_or_default() {
                let name = p["name"].as_str().unwrap_or_default();
                match p["in"].as_str() {
                    Some("query") => {
                        match our_params
                            .iter()
                            .find(|q| q["in"] == "query" && q["name"] == name)
                        {
                            None => diffs.push(format!("{label}: missing query parameter {name}")),
                            Some(q) => {
                                let theirs = p["type"].as_str().unwrap_or("any");
                                let ours_t = type_of(&q["schema"], sdefs);
                                if !compatible(&ours_t, theirs) {
                                    diffs.push(format!("{label}: query parameter {name} is {ours_t}, contract says {theirs}"));
                                }
                            }
                        }
                    }
                    Some("path") => {
                        let count = our_params.iter().filter(|q| q["in"] == "path").count();
                        if count == 0 {
                            diffs.push(format!("{label}: missing path parameter {name}"));
                        }
                    }
                    Some("body") => {
                        let Some(body) = ours["requestBody"]["content"]["application/json"]
                            ["schema"]
                            .as_object()
                        else {
                            diffs.push(format!("{label}: missing request body"));
                            continue;
                        };
                        let ours_props = props(&Value::Object(body.clone()), sdefs);
                        for (field, fschema) in props(&p["schema"], rdefs) {
                            match ours_props.get(&field) {
                                None => {
                                    diffs.push(format!("{label}: request field {field} missing"))
                                }
                                Some(s) => {
                                    let (o, t) = (type_of(s, sdefs), type_of(&fschema, rdefs));
                                    if !compatible(&o, &t) {
                                        diffs.push(format!("{label}: request field {field} is {o}, contract says {t}"));
                                    }
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            // 200 response: every field of `data` (for lists: of the items).
            let theirs = &op["responses"]["200"]["schema"];
            let ours_schema = &ours["responses"]["200"]["content"]["application/json"]["schema"];
            if let Some(their_data) = data_schema(theirs, rdefs) {
                let Some(our_data) = data_schema(ours_schema, sdefs) else {
                    diffs.push(format!("{label}: 200 response has no data field"));
                    continue;
                };
                let (tt, ot) = (type_of(&their_data, rdefs), type_of(&our_data, sdefs));
                if !compatible(&ot, &tt) {
                    diffs.push(format!("{label}: data is {ot}, contract says {tt}"));
                    continue;
                }
                let (their_fields, our_fields) = if tt == "array" {
                    (
                        props(&resolve(&their_data, rdefs, 0)["items"], rdefs),
                        props(&resolve(&our_data, sdefs, 0)["items"], sdefs),
                    )
                } else {
                    (props(&their_data, rdefs), props(&our_data, sdefs))
                };
                for (field, fschema) in their_fields {
                    match our_fields.get(&field) {
                        None => diffs.push(format!("{label}: response field {field} missing")),
                        Some(s) => {
                            let (o, t) = (type_of(s, sdefs), type_of(&fschema, rdefs));
                            if !compatible(&o, &t) {
                                diffs.push(format!(
                                    "{label}: response field {field} is {o}, contract says {t}"
                                ));
                            }
                        }
                    }
                }
                if tt == "array" {
                    let our_meta = props(ours_schema, sdefs);
                    let their_meta = props(theirs, rdefs);
                    if their_meta.contains_key("meta") && !our_meta.contains_key("meta") {
                        diffs.push(format!("{label}: pagination meta missing"));
                    }
                }
            }
        }
    }
    let set: BTreeSet<String> = diffs.into_iter().collect();
    set.into_iter().collect()
}

#[tokio::test]
async fn served_openapi_matches_the_contract() {
    let app = TestApp::spawn().await;
    let (status, served) = json(app.http.get(app.url("/openapi.json")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(
        served["openapi"].as_str().map(|v| v.starts_with("3.")),
        Some(true)
    );
    let reference: Value = serde_json::from_str(include_str!("../../docs/contract/swagger.json"))
        .expect("contract parses");
    let diffs = differences(&reference, &served);
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// Every alternative of a schema (`oneOf`/`anyOf` members, else itself).
fn alternatives(schema: &Value, defs: &Value) -> Vec<Value> {
    let s = match schema.get("$ref") {
        Some(_) => resolve(schema, defs, 0),
        None => schema.clone(),
    };
    match s
        .get("oneOf")
        .or_else(|| s.get("anyOf"))
        .and_then(Value::as_array)
    {
        Some(alts) => alts.iter().map(|a| resolve(a, defs, 0)).collect(),
        None => vec![resolve(&s, defs, 0)],
    }
}

/// The earlier contract generation (`legacy/swagger-2026-02.json`) sends
/// `multipart/form-data` to four operations. Each must describe both
/// request forms; every form field of the legacy contract is in the
/// multipart schema (files as binary strings, required ones required), and
/// the legacy 200 `data` fields are in one of the answer's alternatives.
pub fn legacy_form_differences(legacy: &Value, served: &Value) -> Vec<String> {
    let (ldefs, sdefs) = (&legacy["definitions"], &served["components"]["schemas"]);
    let served_by_shape: std::collections::HashMap<String, Value> = served["paths"]
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|(p, v)| (shape(&p), v))
        .collect();
    let mut diffs = Vec::new();
    let mut forms = 0;
    for (path, item) in legacy["paths"].as_object().cloned().unwrap_or_default() {
        for (method, op) in item.as_object().cloned().unwrap_or_default() {
            let multipart = op["consumes"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c == "multipart/form-data"));
            if !multipart {
                continue;
            }
            forms += 1;
            let label = format!("{} {path}", method.to_uppercase());
            let ours = &served_by_shape
                .get(&shape(&path))
                .cloned()
                .unwrap_or_default()[&method];
            let content = &ours["requestBody"]["content"];
            if !content["application/json"]["schema"].is_object() {
                diffs.push(format!("{label}: JSON request form missing"));
            }
            let form = resolve(&content["multipart/form-data"]["schema"], sdefs, 0);
            let fields = form["properties"].as_object().cloned().unwrap_or_default();
            if fields.is_empty() {
                diffs.push(format!("{label}: multipart request form missing"));
                continue;
            }
            let required: Vec<&str> = form["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for p in op["parameters"].as_array().cloned().unwrap_or_default() {
                if p["in"] != "formData" {
                    continue;
                }
                let name = p["name"].as_str().unwrap_or_default();
                let Some(ours) = fields.get(name) else {
                    diffs.push(format!("{label}: form field {name} missing"));
                    continue;
                };
                let theirs = p["type"].as_str().unwrap_or("any");
                let ours_t = type_of(ours, sdefs);
                let ok = if theirs == "file" {
                    let r = resolve(ours, sdefs, 0);
                    let binary = |s: &Value| s["format"] == "binary";
                    ours_t == "string"
                        && (binary(&r)
                            || r["oneOf"].as_array().is_some_and(|a| a.iter().any(binary)))
                } else {
                    compatible(&ours_t, theirs)
                };
                if !ok {
                    diffs.push(format!(
                        "{label}: form field {name} is {ours_t}, legacy says {theirs}"
                    ));
                }
                if p["required"] == true && !required.contains(&name) {
                    diffs.push(format!("{label}: form field {name} should be required"));
                }
            }
            let their_data = data_schema(&op["responses"]["200"]["schema"], ldefs);
            let our_data = data_schema(
                &ours["responses"]["200"]["content"]["application/json"]["schema"],
                sdefs,
            );
            if let (Some(theirs), Some(ours)) = (their_data, our_data) {
                let wanted: Vec<String> = props(&theirs, ldefs).keys().cloned().collect();
                let found = alternatives(&ours, sdefs).iter().any(|alt| {
                    let have = alt["properties"].as_object().cloned().unwrap_or_default();
                    wanted.iter().all(|f| have.contains_key(f))
                });
                if !found {
                    diffs.push(format!(
                        "{label}: no answer has the legacy data fields {wanted:?}"
                    ));
                }
            } else {
                diffs.push(format!("{label}: 200 data missing"));
            }
        }
    }
    if forms != 4 {
        diffs.push(format!(
            "expected 4 legacy multipart operations, found {forms}"
        ));
    }
    diffs
}

#[tokio::test]
async fn served_openapi_describes_both_generations_of_the_upload_forms() {
    let app = TestApp::spawn().await;
    let (_, served) = json(app.http.get(app.url("/openapi.json")).send().await.unwrap()).await;
    let legacy: Value = serde_json::from_str(include_str!(
        "../../docs/contract/legacy/swagger-2026-02.json"
    ))
    .expect("legacy contract parses");
    let diffs = legacy_form_differences(&legacy, &served);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    // The checker sees a document without the forms.
    let mut stripped = served.clone();
    for (path, method) in [("/api/user/profile", "put"), ("/api/media/upload", "post")] {
        stripped["paths"][path][method]["requestBody"]["content"]
            .as_object_mut()
            .unwrap()
            .remove("multipart/form-data");
    }
    assert_eq!(legacy_form_differences(&legacy, &stripped).len(), 2);
}

/// Operation ids name operations uniquely (clients generate method names
/// from them), and every operation documents its 200 (or 101) and at least
/// one error with the envelope.
#[tokio::test]
async fn every_operation_has_a_unique_id_and_documented_errors() {
    let app = TestApp::spawn().await;
    let (_, served) = json(app.http.get(app.url("/openapi.json")).send().await.unwrap()).await;
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    for (path, item) in served["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let label = format!("{} {path}", method.to_uppercase());
            match op["operationId"].as_str() {
                Some(id) if seen.insert(id.to_string()) => {}
                other => problems.push(format!(
                    "{label}: operationId {other:?} missing or repeated"
                )),
            }
            let responses = op["responses"].as_object().unwrap();
            if !responses.contains_key("200") && !responses.contains_key("101") {
                problems.push(format!("{label}: no success response"));
            }
            let enveloped_error = responses.iter().any(|(code, r)| {
                code.starts_with(['4', '5'])
                    && r["content"]["application/json"]["schema"]["$ref"]
                        .as_str()
                        .is_some_and(|s| s.ends_with("/ErrorBody"))
            });
            // The liveness probe cannot fail while the process answers.
            if !enveloped_error && path != "/healthz" {
                problems.push(format!("{label}: no error response with the envelope"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn docs_and_asyncapi_are_served() {
    let app = TestApp::spawn().await;
    let res = app.http.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("/openapi.json") && !html.contains("cdn"),
        "self-contained docs page"
    );
    let res = app
        .http
        .get(app.url("/asyncapi.yaml"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("message.new"));
    let (status, doc) = json(app.http.get(app.url("/openapi.json")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert!(doc["paths"]["/readyz"]["get"].is_object());
}

#[test]
fn the_checker_reports_what_is_missing() {
    let reference: Value = serde_json::from_str(include_str!("../../docs/contract/swagger.json"))
        .expect("contract parses");
    let empty = serde_json::json!({"openapi": "3.1.0", "paths": {}, "components": {"schemas": {}}});
    let diffs = differences(&reference, &empty);
    assert!(
        diffs.iter().any(|d| d == "missing path /api/messages"),
        "{diffs:?}"
    );
    // The reference compared with itself (Swagger 2 body params aside) has no response gaps.
    assert!(diffs.len() >= 50);
}
