//! Versions whose files do not come from tracking: a copy of another registered
//! version (MLflow's `copy_model_version`), and a reference to a source the registry
//! does not read, recorded as given the way MLflow records every source.
//!
//! A copy reads the source version's files from the registry's own store before the
//! new version exists, so a missing or unready source creates nothing. A reference has
//! no files: it is READY at once, `reference_only`, with no storage location, and the
//! calls that need its files (listing, download, serving, the gate) answer
//! FAILED_PRECONDITION saying so.

use mlops_proto::registry::v1 as pb;

use crate::error::{invalid, precondition, Result};
use crate::register::{Copied, Registrar};
use crate::store::NewVersion;
use crate::validate;

/// The longest source a reference records.
const MAX_SOURCE_CHARS: usize = 4096;

/// `lineage` with the user and run link the request gives.
pub(crate) fn stamped(
    mut lineage: pb::Lineage,
    req: &pb::CreateModelVersionRequest,
) -> pb::Lineage {
    if !req.user_id.is_empty() {
        lineage.user_id = req.user_id.clone();
    }
    if !req.run_link.is_empty() {
        lineage.run_link = req.run_link.clone();
    }
    lineage
}

impl Registrar {
    /// Records `req.source` as the version's source without reading it.
    pub(crate) async fn register_reference(
        &self,
        req: pb::CreateModelVersionRequest,
    ) -> Result<pb::ModelVersion> {
        validate::given("source", &req.source, MAX_SOURCE_CHARS)?;
        if req.source.trim().is_empty() {
            return Err(invalid("source must not be blank"));
        }
        validate::given("run_id", &req.run_id, 256)?;
        let new = NewVersion {
            source: req.source.clone(),
            run_id: req.run_id.clone(),
            lineage: stamped(
                pb::Lineage {
                    run_id: req.run_id.clone(),
                    ..Default::default()
                },
                &req,
            ),
            description: req.description.clone(),
            tags: req.tags.clone(),
        };
        self.record_reference(&req.name, &new).await
    }

    /// Creates `new` as a version of `name` with no files of its own: READY at once,
    /// with no storage location (which is what marks it `reference_only`).
    pub(crate) async fn record_reference(
        &self,
        name: &str,
        new: &NewVersion,
    ) -> Result<pb::ModelVersion> {
        let pending = self
            .store
            .begin_version(name, new, |_, _| String::new(), None)
            .await?;
        let none = Copied {
            signature: None,
            files: vec![],
            stored: false,
        };
        self.finish(pending, new, Ok(none)).await
    }

    /// Copies version `copy_from_version` of `copy_from_name` (files, signature and
    /// lineage) into a new version of `req.name`, with source `models:/<name>/<version>`.
    pub(crate) async fn copy_version(
        &self,
        req: pb::CreateModelVersionRequest,
    ) -> Result<pb::ModelVersion> {
        let from = self
            .store
            .get_version(&req.copy_from_name, req.copy_from_version)
            .await?;
        if from.status != pb::ModelVersionStatus::Ready as i32 {
            return Err(precondition(format!(
                "model `{}` version {} is not READY, so it cannot be copied",
                from.name, from.version
            )));
        }
        let source = format!("models:/{}/{}", from.name, from.version);
        let mut lineage = stamped(from.lineage.clone().unwrap_or_default(), &req);
        lineage.copied_from = source.clone();
        let new = NewVersion {
            source,
            run_id: from.run_id.clone(),
            lineage,
            description: req.description.clone(),
            tags: req.tags.clone(),
        };
        if from.reference_only {
            // Nothing to copy: the copy is a reference to the same source.
            return self.record_reference(&req.name, &new).await;
        }
        let (from_id, _, files) = self.store.version_files(&from.name, from.version).await?;
        let total: u64 = files.iter().map(|f| f.1).sum();
        if total > self.max_bytes {
            return Err(self.too_big(total));
        }
        let pending = self
            .store
            .begin_version(&req.name, &new, |id, v| self.files.location(id, v), None)
            .await?;
        let copied = async {
            let mut written = vec![];
            for (rel, _) in &files {
                let chunks = self.files.read(&from_id, from.version, rel).await?;
                let w = self
                    .files
                    .write(
                        &pending.model_id,
                        pending.version,
                        rel,
                        chunks,
                        false,
                        self.max_bytes,
                    )
                    .await?;
                written.push((w.rel, w.size));
            }
            Ok(Copied {
                // The files are the same bytes: the source's signature holds.
                signature: from.signature.clone(),
                files: written,
                stored: true,
            })
        }
        .await;
        self.finish(pending, &new, copied).await
    }
}
