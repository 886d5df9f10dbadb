//! The CLI's one way to answer a command: call a service, then print what it said,
//! as JSON for scripts (`--json`) or as lines and tables for people.

use std::future::Future;

use serde_json::{json, Value};

use crate::table;

/// How results are printed.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// JSON instead of text.
    pub json: bool,
}

impl Output {
    /// Awaits `call`, keeps what `pick` takes from the answer, and prints it:
    /// `json(&it)` with `--json` (nothing when that is `None`), `text(&it)`
    /// otherwise. Returns what it printed.
    pub async fn call<R, T>(
        self,
        call: impl Future<Output = Result<tonic::Response<R>, tonic::Status>>,
        pick: impl FnOnce(R) -> T,
        json: impl FnOnce(&T) -> Option<Value>,
        text: impl FnOnce(&T),
    ) -> anyhow::Result<T> {
        let it = pick(call.await?.into_inner());
        if self.json {
            if let Some(v) = json(&it) {
                print_json(&v);
            }
        } else {
            text(&it);
        }
        Ok(it)
    }

    /// [`Output::call`] for a list: a JSON array of each item's `json`, or a table
    /// of each item's `row` under `header`.
    pub async fn list<R, T>(
        self,
        call: impl Future<Output = Result<tonic::Response<R>, tonic::Status>>,
        pick: impl FnOnce(R) -> Vec<T>,
        json: impl Fn(&T) -> Value,
        header: &[&str],
        row: impl Fn(&T) -> Vec<String>,
    ) -> anyhow::Result<Vec<T>> {
        self.call(
            call,
            pick,
            |items| Some(json!(items.iter().map(json).collect::<Vec<_>>())),
            |items| table::print(header, &items.iter().map(row).collect::<Vec<_>>()),
        )
        .await
    }
}

/// Prints `v` as indented JSON.
pub fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}
