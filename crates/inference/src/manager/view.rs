//! How a deployment is seen: listed and described, with the versions of its traffic
//! variants and its recent trouble, and where one of its requests goes.

use mlops_storage::now_millis;

use super::{read, Deployment, Manager, Noted, Notes, Route, Slot, RECENT_ERRORS};
use crate::error::{InferenceError, Result};
use crate::traffic::{self, Fault, SHADOW, STABLE};

impl Manager {
    /// Every deployment, by name.
    pub fn deployments(&self) -> Vec<Deployment> {
        let specs = read(&self.inner.specs).clone();
        let mut out: Vec<Deployment> = specs
            .into_iter()
            .map(|(name, spec)| Deployment {
                slot: self.slot(&name).unwrap_or(Slot::Loading),
                notes: self.notes(&name),
                variant_versions: self.variant_versions(&name),
                name,
                spec,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The deployment `name`.
    pub fn deployment(&self, name: &str) -> Result<Deployment> {
        let spec = read(&self.inner.specs).get(name).cloned().ok_or_else(|| {
            InferenceError::NotFound(format!(
                "model {name:?} is not deployed here; deploy it first (`mlops serve deploy {name}`)"
            ))
        })?;
        Ok(Deployment {
            name: name.to_owned(),
            slot: self.slot(name).unwrap_or(Slot::Loading),
            notes: self.notes(name),
            variant_versions: self.variant_versions(name),
            spec,
        })
    }

    fn variant_versions(&self, name: &str) -> Vec<(String, i64)> {
        let mut out = vec![(STABLE.to_owned(), self.serving(name))];
        if let Some(split) = read(&self.inner.splits).get(name) {
            for (v, l) in &split.variants {
                out.push((v.name.clone(), l.version));
            }
            if let Some((_, l)) = &split.shadow {
                out.push((SHADOW.to_owned(), l.version));
            }
        }
        out
    }

    /// Where a request for `name` goes: `version` when given (the stable target's or a
    /// variant's), else the variant the route header (`header(name)` gives a header's value)
    /// or a draw picks by the weights; with a shadow copy when the shadow's share says so.
    pub fn route(
        &self,
        name: &str,
        version: &str,
        header: impl Fn(&str) -> Option<String>,
    ) -> Result<Route> {
        let split = read(&self.inner.splits).get(name).cloned();
        let stable = |loaded| Route {
            loaded,
            fault: Fault::default(),
            shadow: None,
        };
        let Some(split) = split else {
            return self.ready(name, version).map(stable);
        };
        if !version.is_empty() {
            if let Some((v, l)) = split
                .variants
                .iter()
                .find(|(_, l)| l.version.to_string() == version)
            {
                return Ok(Route {
                    loaded: l.clone(),
                    fault: v.fault,
                    shadow: None,
                });
            }
            return self.ready(name, version).map(stable);
        }
        let weights = || split.variants.iter().map(|(v, _)| v.weight);
        let chosen = match header(&split.header) {
            Some(k) if k == STABLE => None,
            Some(k) => match split.variants.iter().position(|(v, _)| v.name == k) {
                Some(i) => Some(i),
                None => traffic::pick(weights(), traffic::point_of(&k)),
            },
            None => traffic::pick(weights(), traffic::draw()),
        };
        let shadow = split
            .shadow
            .as_ref()
            .filter(|(s, _)| s.share >= 1.0 || traffic::draw() < s.share)
            .map(|(s, l)| (l.clone(), s.fault));
        Ok(match chosen {
            Some(i) => {
                let (v, l) = &split.variants[i];
                Route {
                    loaded: l.clone(),
                    fault: v.fault,
                    shadow,
                }
            }
            None => Route {
                shadow,
                ..stable(self.ready(name, "")?)
            },
        })
    }

    pub(super) fn notes(&self, name: &str) -> Notes {
        let notes = self.inner.notes.lock().unwrap_or_else(|p| p.into_inner());
        notes.get(name).cloned().unwrap_or_default()
    }

    /// Records that the last change of `name` did what it was asked.
    pub(super) fn note_done(&self, name: &str) {
        let mut notes = self.inner.notes.lock().unwrap_or_else(|p| p.into_inner());
        let n = notes.entry(name.to_owned()).or_default();
        n.reason.clear();
        n.updated_at = now_millis();
    }

    /// Records an error of `name`; `keeps_serving` when an older version still serves.
    pub(super) fn note_error(
        &self,
        name: &str,
        version: i64,
        message: &str,
        keeps_serving: Option<i64>,
    ) {
        let mut notes = self.inner.notes.lock().unwrap_or_else(|p| p.into_inner());
        let n = notes.entry(name.to_owned()).or_default();
        let now = now_millis();
        n.reason = match keeps_serving {
            Some(v) => format!("version {v} keeps serving: {message}"),
            None => message.to_owned(),
        };
        n.updated_at = now;
        n.errors.push_back(Noted {
            time: now,
            version,
            message: message.to_owned(),
        });
        while n.errors.len() > RECENT_ERRORS {
            n.errors.pop_front();
        }
    }
}
