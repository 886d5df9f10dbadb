//! Registering a version: from a tracking run's artifact or from an uploaded file.
//!
//! Everything that can be checked before a version exists is checked first (the
//! model, the run, the artifact, the size), so those mistakes create nothing. Then
//! the version is created PENDING_REGISTRATION (its number taken for good), the
//! files are copied into the registry's store and an ONNX signature is read from
//! the file itself; the version ends READY, or FAILED_REGISTRATION with the reason
//! and none of its files left behind.

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use mlops_proto::registry::v1 as pb;
use mlops_storage::blob::{Staged, SMALL_FILE_BYTES};
use tonic::Streaming;

pub(crate) use crate::copies::stamped;
use crate::error::{invalid, RegistryError, Result};
use crate::files::ModelFiles;
use crate::lineage::{lineage_of, Owner, TrackingClient};
use crate::store::{last_per_key, Expected, NewVersion, Pending, Store};
use crate::validate;

/// Registers versions.
#[derive(Clone)]
pub struct Registrar {
    pub(crate) store: Store,
    pub(crate) files: ModelFiles,
    tracking: TrackingClient,
    pub(crate) max_bytes: u64,
}

/// The first file of a registration, begun while its version is created.
enum First {
    /// Its download.
    Started(Result<BoxStream<'static, Result<Bytes>>>),
    /// Downloaded whole and staged, with its content.
    Staged(Result<(Staged, Vec<Bytes>)>),
}

/// What a successful copy produced.
pub(crate) struct Copied {
    pub(crate) signature: Option<pb::Signature>,
    pub(crate) files: Vec<(String, u64)>,
    /// False for a reference: the registry holds no files of the version.
    pub(crate) stored: bool,
}

fn is_onnx(rel: &str) -> bool {
    rel.to_ascii_lowercase().ends_with(".onnx")
}

/// The file a signature is read from: `model.onnx` (shallowest) if there is one,
/// else the first `.onnx` file in path order.
fn signature_file<'a>(rels: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut onnx: Vec<&str> = rels.filter(|r| is_onnx(r)).collect();
    onnx.sort_by_key(|r| {
        (
            r.rsplit('/').next() != Some("model.onnx"),
            r.matches('/').count(),
            *r,
        )
    });
    onnx.first().copied()
}

/// The ONNX signature of `bytes`, read from `rel`.
pub fn read_signature(rel: &str, bytes: &[u8]) -> Result<pb::Signature> {
    let s = mlops_onnx::read_signature(bytes)
        .map_err(|e| invalid(format!("`{rel}` is not a valid ONNX model: {e}")))?;
    let spec = |t: mlops_onnx::TensorSpec| pb::TensorSpec {
        name: t.name,
        elem_type: t.elem_type,
        shape: t.shape.map(|dims| pb::Shape {
            dims: dims
                .into_iter()
                .map(|d| pb::Dim {
                    value: match d {
                        mlops_onnx::Dim::Fixed(n) => Some(pb::dim::Value::Size(n)),
                        mlops_onnx::Dim::Symbolic(s) => Some(pb::dim::Value::Symbol(s)),
                        mlops_onnx::Dim::Unknown => None,
                    },
                })
                .collect(),
        }),
    };
    Ok(pb::Signature {
        format: "onnx".into(),
        file: rel.to_owned(),
        inputs: s.inputs.into_iter().map(spec).collect(),
        outputs: s.outputs.into_iter().map(spec).collect(),
        ir_version: s.ir_version,
        opsets: s
            .opsets
            .into_iter()
            .map(|(domain, v)| format!("{domain}:{v}"))
            .collect(),
        producer: s.producer,
    })
}

impl Registrar {
    /// A registrar over the store, the model files and the tracking service.
    pub fn new(store: Store, files: ModelFiles, tracking: TrackingClient, max_bytes: u64) -> Self {
        Registrar {
            store,
            files,
            tracking,
            max_bytes,
        }
    }

    /// The model files store.
    pub fn files(&self) -> &ModelFiles {
        &self.files
    }

    pub(crate) fn too_big(&self, size: u64) -> RegistryError {
        invalid(format!(
            "the model is {size} bytes; this registry accepts at most {} (MLOPS_REGISTRY_MAX_MODEL_BYTES)",
            self.max_bytes
        ))
    }

    /// Registers `run_id`'s artifact at `artifact_path`, a tracking logged model's
    /// files, a copy of another version, or a reference to a source it does not read,
    /// as a new version.
    pub async fn register_artifact(
        &self,
        req: pb::CreateModelVersionRequest,
    ) -> Result<pb::ModelVersion> {
        validate::model_name(&req.name)?;
        validate::description(&req.description)?;
        for t in &req.tags {
            validate::tag(&t.key, &t.value)?;
        }
        validate::given("run_link", &req.run_link, 4096)?;
        validate::given("user_id", &req.user_id, 256)?;
        let ways = [
            !req.copy_from_name.is_empty(),
            !req.source.is_empty(),
            !req.logged_model_id.is_empty(),
            !req.artifact_path.is_empty(),
        ];
        if ways.iter().filter(|w| **w).count() > 1 {
            return Err(invalid(
                "give one of artifact_path (with run_id), logged_model_id, source and \
                 copy_from_name: they are different ways to register a version",
            ));
        }
        if !req.copy_from_name.is_empty() {
            return self.copy_version(req).await;
        }
        if !req.source.is_empty() {
            return self.register_reference(req).await;
        }
        if !req.logged_model_id.is_empty() {
            return self.register_logged_model(req).await;
        }
        validate::run_id(&req.run_id)?;
        // An empty path is the run's whole artifact root, which MLflow users register
        // as `runs:/<run id>` or as the run's artifact URI.
        let path = req.artifact_path.trim_end_matches('/').to_owned();
        mlops_storage::blob::check_relative_path(&path, true).map_err(|why| {
            invalid(format!(
                "artifact_path {why}; give the model's path under the run's artifact root, like `model`"
            ))
        })?;
        // The run and its files first: a mistake there creates nothing (an unknown
        // model is refused when the version would be created).
        let owner = Owner::Run(req.run_id.clone());
        // Two independent questions to tracking, asked at once; meanwhile the model
        // is read, so that its version can be written in one statement.
        let (run, files, expected) = tokio::join!(
            self.tracking.run(&req.run_id),
            self.tracking
                .artifact_files(&owner, &path, self.inline_budget()),
            self.store.expect_version(&req.name)
        );
        let (run, files) = (run?, files?);
        if files.is_empty() && !path.is_empty() {
            return Err(crate::error::precondition(format!(
                "artifact directory `{path}` in run {} holds no files",
                req.run_id
            )));
        }
        let total: u64 = files.iter().map(|f| f.size).sum();
        if total > self.max_bytes {
            return Err(self.too_big(total));
        }
        let new = NewVersion {
            source: if path.is_empty() {
                format!("runs:/{}", req.run_id)
            } else {
                format!("runs:/{}/{path}", req.run_id)
            },
            run_id: req.run_id.clone(),
            lineage: stamped(lineage_of(&run, &path), &req),
            description: req.description.clone(),
            tags: req.tags.clone(),
        };
        if files.is_empty() {
            // A run with no files yet, registered whole, as MLflow registers it: the
            // version records it without holding anything.
            return self.record_reference(&req.name, &new).await;
        }
        self.copy_in(&req.name, &new, &owner, &files, expected)
            .await
    }

    /// Registers a tracking logged model's whole artifact root.
    async fn register_logged_model(
        &self,
        req: pb::CreateModelVersionRequest,
    ) -> Result<pb::ModelVersion> {
        if !req.artifact_path.is_empty() {
            return Err(invalid(
                "give artifact_path (with run_id) or logged_model_id, not both",
            ));
        }
        let model = self.tracking.logged_model(&req.logged_model_id).await?;
        let run_id = if req.run_id.is_empty() {
            model.source_run_id.clone()
        } else {
            validate::run_id(&req.run_id)?;
            req.run_id.clone()
        };
        let mut lineage = if run_id.is_empty() {
            pb::Lineage {
                experiment_id: model.experiment_id.clone(),
                ..Default::default()
            }
        } else {
            lineage_of(&self.tracking.run(&run_id).await?, "")
        };
        lineage.logged_model_id = model.model_id.clone();
        let owner = Owner::LoggedModel(model.model_id.clone());
        let files = self
            .tracking
            .artifact_files(&owner, "", self.inline_budget())
            .await?;
        let total: u64 = files.iter().map(|f| f.size).sum();
        if total > self.max_bytes {
            return Err(self.too_big(total));
        }
        let new = NewVersion {
            source: format!("models:/{}", model.model_id),
            run_id,
            lineage: stamped(lineage, &req),
            description: req.description.clone(),
            tags: req.tags.clone(),
        };
        if files.is_empty() {
            // A logged model with no files yet, which MLflow registers all the same:
            // the version records it without holding anything.
            return self.record_reference(&req.name, &new).await;
        }
        self.copy_in(&req.name, &new, &owner, &files, None).await
    }

    /// Creates the version, copies `files` from tracking and reads the signature.
    async fn copy_in(
        &self,
        name: &str,
        new: &NewVersion,
        owner: &Owner,
        files: &[crate::lineage::ArtifactFile],
        expected: Option<Expected>,
    ) -> Result<pb::ModelVersion> {
        // The first file's download is asked for while the PENDING row is written: the
        // two round trips overlap. A small file on a local store is also written to
        // the staging directory meanwhile (creating a file and a directory can wait
        // on the filesystem's journal as long as the row takes). Should the row fail,
        // the download is dropped unread, or the staged file removed.
        let likely = expected.clone();
        let begin =
            self.store
                .begin_version(name, new, |id, v| self.files.location(id, v), expected);
        let (pending, mut first) = match files.first() {
            Some(f) if f.size <= SMALL_FILE_BYTES as u64 && self.files.is_local() => {
                let likely = likely.as_ref().map(|e| (e.model_id(), e.next_version()));
                let (pending, staged) = tokio::join!(begin, self.stage_first(owner, f, likely));
                (pending?, Some(First::Staged(staged)))
            }
            Some(f) => {
                let (pending, first) = tokio::join!(begin, self.chunks(owner, f));
                (pending?, Some(First::Started(first)))
            }
            None => (begin.await?, None),
        };
        let sig_file = signature_file(files.iter().map(|f| f.rel.as_str())).map(str::to_owned);
        let copied = async {
            let mut written = vec![];
            let mut signature = None;
            for f in files {
                let keep = sig_file.as_deref() == Some(f.rel.as_str());
                let w = match first.take() {
                    Some(First::Staged(staged)) => {
                        let (staged, parts) = staged?;
                        let content = keep.then(|| parts.concat());
                        self.files
                            .place(staged, &pending.model_id, pending.version, &f.rel, content)
                            .await?
                    }
                    started => {
                        let chunks = match started {
                            Some(First::Started(started)) => started?,
                            _ => self.chunks(owner, f).await?,
                        };
                        self.files
                            .write(
                                &pending.model_id,
                                pending.version,
                                &f.rel,
                                chunks,
                                keep,
                                self.max_bytes,
                            )
                            .await?
                    }
                };
                if let Some(content) = &w.content {
                    signature = Some(read_signature(&w.rel, content)?);
                }
                written.push((w.rel, w.size));
            }
            Ok(Copied {
                signature,
                files: written,
                stored: true,
            })
        }
        .await;
        self.finish(pending, new, copied).await
    }

    /// How many bytes of a model's files its listing may bring with it (see
    /// [`crate::lineage::ArtifactFile::content`]).
    fn inline_budget(&self) -> u64 {
        (SMALL_FILE_BYTES as u64).min(self.max_bytes)
    }

    /// `f`'s bytes: what its listing brought, else a download.
    async fn chunks(
        &self,
        owner: &Owner,
        f: &crate::lineage::ArtifactFile,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        match &f.content {
            Some(c) => Ok(futures::stream::iter([Ok(c.clone())]).boxed()),
            None => self.tracking.download(owner, &f.path).await,
        }
    }

    /// Reads a small file whole (from its listing, else a download) and writes it to
    /// the staging directory (see [`ModelFiles::stage`]); returns it with its content.
    async fn stage_first(
        &self,
        owner: &Owner,
        f: &crate::lineage::ArtifactFile,
        likely: Option<(&str, i64)>,
    ) -> Result<(Staged, Vec<Bytes>)> {
        let mut chunks = self.chunks(owner, f).await?;
        let mut parts = vec![];
        let mut size = 0;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            size += chunk.len();
            if size as u64 > self.max_bytes {
                return Err(self.too_big(size as u64));
            }
            if size > SMALL_FILE_BYTES {
                return Err(crate::error::precondition(format!(
                    "artifact `{}` grew from {} bytes while it was copied; register it again \
                     once it is written",
                    f.path, f.size
                )));
            }
            parts.push(chunk);
        }
        let staged = self
            .files
            .stage(parts.clone(), likely)
            .await?
            .ok_or_else(|| RegistryError::Unavailable("the model store is not local".into()))?;
        Ok((staged, parts))
    }

    /// Registers an uploaded file as a new version.
    pub async fn upload(
        &self,
        mut stream: Streaming<pb::UploadModelVersionRequest>,
    ) -> Result<pb::ModelVersion> {
        let first = stream
            .message()
            .await
            .map_err(|s| invalid(format!("reading the upload failed: {}", s.message())))?;
        let header =
            match first.and_then(|m| m.item) {
                Some(pb::upload_model_version_request::Item::Header(h)) => h,
                _ => return Err(invalid(
                    "the first message of an upload must be its header (model name and file name)",
                )),
            };
        validate::model_name(&header.name)?;
        validate::file_name(&header.file_name)?;
        validate::description(&header.description)?;
        for t in &header.tags {
            validate::tag(&t.key, &t.value)?;
        }
        let mut lineage = if header.run_id.is_empty() {
            pb::Lineage::default()
        } else {
            validate::run_id(&header.run_id)?;
            lineage_of(&self.tracking.run(&header.run_id).await?, "")
        };
        lineage.uploaded_file = header.file_name.clone();
        let new = NewVersion {
            source: format!("upload:{}", header.file_name),
            run_id: header.run_id.clone(),
            lineage,
            description: header.description.clone(),
            tags: header.tags.clone(),
        };
        let pending = self
            .store
            .begin_version(&header.name, &new, |id, v| self.files.location(id, v), None)
            .await?;
        let chunks: BoxStream<'_, Result<Bytes>> = stream
            .map(|m| match m {
                Ok(pb::UploadModelVersionRequest {
                    item: Some(pb::upload_model_version_request::Item::Chunk(b)),
                }) => Ok(Bytes::from(b)),
                Ok(_) => Err(invalid(
                    "the upload sent a second header; only the first message is a header",
                )),
                Err(s) => Err(invalid(format!(
                    "the upload broke off before its end: {}",
                    s.message()
                ))),
            })
            .boxed();
        let keep = is_onnx(&header.file_name);
        let copied = async {
            let w = self
                .files
                .write(
                    &pending.model_id,
                    pending.version,
                    &header.file_name,
                    chunks,
                    keep,
                    self.max_bytes,
                )
                .await?;
            if w.size == 0 {
                return Err(invalid(format!("the uploaded file `{}` is empty", w.rel)));
            }
            let signature = match &w.content {
                Some(content) => Some(read_signature(&w.rel, content)?),
                None => None,
            };
            Ok(Copied {
                signature,
                files: vec![(w.rel, w.size)],
                stored: true,
            })
        }
        .await;
        self.finish(pending, &new, copied).await
    }

    pub(crate) async fn finish(
        &self,
        p: Pending,
        new: &NewVersion,
        copied: Result<Copied>,
    ) -> Result<pb::ModelVersion> {
        match copied {
            Ok(c) => {
                let updated = match self
                    .store
                    .version_ready(&p, c.signature.as_ref(), &c.files)
                    .await
                {
                    Ok(at) => at,
                    Err(e) => {
                        self.files.remove_version(&p.model_id, p.version).await;
                        return Err(e);
                    }
                };
                // Everything the version holds is in hand: answer without reading it back.
                let mut tags: Vec<pb::Tag> = last_per_key(&new.tags).into_iter().cloned().collect();
                tags.sort_by(|a, b| a.key.cmp(&b.key));
                Ok(pb::ModelVersion {
                    name: p.name.clone(),
                    version: p.version,
                    creation_timestamp: p.created,
                    last_updated_timestamp: updated,
                    description: new.description.clone(),
                    current_stage: pb::Stage::None as i32,
                    source: new.source.clone(),
                    storage_location: if c.stored {
                        self.files.location(&p.model_id, p.version)
                    } else {
                        String::new()
                    },
                    reference_only: !c.stored,
                    user_id: new.lineage.user_id.clone(),
                    run_link: new.lineage.run_link.clone(),
                    run_id: new.run_id.clone(),
                    status: pb::ModelVersionStatus::Ready as i32,
                    status_message: String::new(),
                    tags,
                    aliases: vec![],
                    lineage: Some(new.lineage.clone()),
                    signature: c.signature,
                    size_bytes: c.files.iter().map(|f| f.1).sum(),
                    last_gate: None,
                    model_id: p.model_id,
                })
            }
            Err(e) => {
                self.files.remove_version(&p.model_id, p.version).await;
                let reason = e.to_string();
                self.store.version_failed(&p, &reason).await?;
                let message = format!(
                    "model `{}` version {} failed registration: {reason} (the version is kept as \
                     FAILED_REGISTRATION; its number is not reused)",
                    p.name, p.version
                );
                Err(match e {
                    RegistryError::InvalidArgument(_) => RegistryError::InvalidArgument(message),
                    RegistryError::NotFound(_) => RegistryError::NotFound(message),
                    RegistryError::FailedPrecondition(_) => {
                        RegistryError::FailedPrecondition(message)
                    }
                    RegistryError::AlreadyExists(_) => RegistryError::AlreadyExists(message),
                    RegistryError::Unavailable(_) => RegistryError::Unavailable(message),
                    other @ RegistryError::Storage(_) => other,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_signature_file() {
        assert_eq!(
            signature_file(["a.onnx", "sub/model.onnx", "MLmodel"].into_iter()),
            Some("sub/model.onnx")
        );
        assert_eq!(
            signature_file(["z.onnx", "b.ONNX"].into_iter()),
            Some("b.ONNX")
        );
        assert_eq!(signature_file(["model.pkl"].into_iter()), None);
    }

    #[test]
    fn reads_a_fixture_signature() {
        let bytes = include_bytes!("../../../tests/fixtures/onnx/linear.onnx");
        let s = read_signature("model.onnx", bytes).unwrap();
        assert_eq!(s.format, "onnx");
        assert_eq!(s.inputs.len(), 1);
        assert_eq!(s.inputs[0].name, "x");
        assert_eq!(s.inputs[0].elem_type, "float");
        let dims = &s.inputs[0].shape.as_ref().unwrap().dims;
        assert_eq!(dims[0].value, Some(pb::dim::Value::Symbol("N".into())));
        assert_eq!(dims[1].value, Some(pb::dim::Value::Size(4)));
        assert_eq!(s.outputs[0].name, "y");
        let e = read_signature("model.onnx", b"hello world")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`model.onnx` is not a valid ONNX model"), "{e}");
    }
}
