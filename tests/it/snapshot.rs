//! Snapshot of the served `/openapi.json`: any change to the API description
//! shows up as a reviewed diff of `tests/snapshots/openapi.json`.
//!
//! The document is normalised (object keys sorted, pretty-printed) so that
//! only real changes differ. After an intended change, regenerate it with
//! `UPDATE_SNAPSHOTS=1 cargo test --test it -- snapshot::` and review the
//! diff; without `UPDATE_SNAPSHOTS` a difference fails the test.

use std::path::PathBuf;

use serde_json::Value;

use crate::harness::{json, TestApp};

/// The same value with every object's keys in sorted order.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

fn normalised(v: &Value) -> String {
    let mut out = serde_json::to_string_pretty(&sorted(v)).expect("serialises");
    out.push('\n');
    out
}

#[tokio::test]
async fn served_openapi_matches_the_snapshot() {
    let app = TestApp::spawn().await;
    let (status, served) = json(app.http.get(app.url("/openapi.json")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    let actual = normalised(&served);
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/openapi.json");
    let expected = std::fs::read_to_string(&file).unwrap_or_default();
    if actual == expected {
        return;
    }
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| !v.is_empty() && v != "0") {
        std::fs::write(&file, &actual).expect("write the snapshot");
        eprintln!("snapshot rewritten: {}", file.display());
        return;
    }
    let diff = similar::TextDiff::from_lines(&expected, &actual)
        .unified_diff()
        .context_radius(3)
        .header("tests/snapshots/openapi.json", "served /openapi.json")
        .to_string();
    panic!(
        "the served /openapi.json differs from tests/snapshots/openapi.json:\n{diff}\n\
         If the change is intended, regenerate the snapshot with\n  \
         UPDATE_SNAPSHOTS=1 cargo test --test it -- snapshot::\n\
         and commit the reviewed diff."
    );
}
