//! The two-step registration of a version: begun PENDING_REGISTRATION (its number
//! taken for good, with its lineage and event), then READY with its files and
//! signature, or FAILED_REGISTRATION with the reason; versions a stopped registry
//! left PENDING expire.

use mlops_events::Envelope;
use mlops_proto::events::v1 as ev;
use mlops_proto::registry::v1 as pb;
use mlops_storage::{now_millis, Backend};
use prost::Message;
use sqlx::Row;

use super::{event, Store, FAILED, PENDING, READY};
use crate::error::{precondition, Result};
use crate::validate;

/// What a new version starts with.
#[derive(Debug, Clone, Default)]
pub struct NewVersion {
    /// "runs:/<run_id>/<path>" or "upload:<file>".
    pub source: String,
    /// The tracking run, if any.
    pub run_id: String,
    /// Captured lineage.
    pub lineage: pb::Lineage,
    /// Description.
    pub description: String,
    /// Tags.
    pub tags: Vec<pb::Tag>,
}

/// A version just created, PENDING_REGISTRATION.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The model's id.
    pub model_id: String,
    /// The model's name.
    pub name: String,
    /// The new version number.
    pub version: i64,
    /// When it was created.
    pub created: i64,
    /// Where its files are stored (empty for a reference).
    pub location: String,
    /// The run it came from, if any.
    pub run_id: String,
}

/// A model's id and next version number as read before its version is created:
/// what [`Store::begin_version`] expects to find, to write the version in one
/// statement.
#[derive(Debug, Clone)]
pub struct Expected {
    model_id: String,
    next_version: i64,
}

impl Expected {
    /// The model's id.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// The number its next version will take unless another registration comes first.
    pub fn next_version(&self) -> i64 {
        self.next_version
    }
}

/// The ModelVersionCreated event of version `version` of `name`.
fn created_event(name: &str, new: &NewVersion, model_id: &str, version: i64, now: i64) -> Envelope {
    event(
        model_id,
        format!("{name}/{version}"),
        &ev::ModelVersionCreated {
            model_id: model_id.to_owned(),
            name: name.to_owned(),
            version,
            source: new.source.clone(),
            run_id: new.run_id.clone(),
            creation_timestamp: now,
        },
    )
}

/// `tags` with one per key, the last value given for it, in the order first given.
pub(crate) fn last_per_key(tags: &[pb::Tag]) -> Vec<&pb::Tag> {
    let mut out: Vec<&pb::Tag> = vec![];
    for t in tags {
        out.retain(|k| k.key != t.key);
        out.push(t);
    }
    out
}

impl Store {
    /// What `name` looks like now, for [`Store::begin_version`] to expect: read
    /// while the caller does other work. None on SQLite (where a transaction is as
    /// fast), for an unknown model, or when the read fails: the version is then
    /// begun in a transaction, which reports what is wrong.
    pub async fn expect_version(&self, name: &str) -> Option<Expected> {
        if self.db.backend() != Backend::Postgres {
            return None;
        }
        let row =
            sqlx::query("SELECT model_id, next_version FROM registered_models WHERE name = $1")
                .bind(name)
                .fetch_optional(self.db.reader())
                .await
                .ok()??;
        Some(Expected {
            model_id: row.get(0),
            next_version: row.get(1),
        })
    }

    /// Step one of a registration: takes the next version number (never reused) and
    /// records the version PENDING_REGISTRATION with its lineage, with the
    /// ModelVersionCreated event, in one transaction.
    ///
    /// With `expected` (PostgreSQL), the version, its tags and its event are one
    /// statement that writes only if the model still has that id and next number:
    /// one round trip where the transaction takes five. Should another registration
    /// or a rename have come first, the transaction runs after all.
    pub async fn begin_version(
        &self,
        name: &str,
        new: &NewVersion,
        location: impl Fn(&str, i64) -> String,
        expected: Option<Expected>,
    ) -> Result<Pending> {
        validate::description(&new.description)?;
        for t in &new.tags {
            validate::tag(&t.key, &t.value)?;
        }
        let now = now_millis();
        if let Some(e) = expected {
            let location = location(&e.model_id, e.next_version);
            if self
                .begin_as_expected(name, new, &location, &e, now)
                .await?
            {
                return Ok(Pending {
                    model_id: e.model_id,
                    name: name.to_owned(),
                    version: e.next_version,
                    created: now,
                    location,
                    run_id: new.run_id.clone(),
                });
            }
        }
        // This commit need not wait for its WAL flush: step two's commit is
        // synchronous and flushes the WAL up to and including this one, and the
        // registration only answers after step two. A crash in between loses the
        // PENDING row and its event together, never one without the other.
        let mut tx = self.db.begin_unsynced().await?;
        let row = sqlx::query(
            "UPDATE registered_models SET next_version = next_version + 1, last_updated_timestamp = $1 \
             WHERE name = $2 RETURNING model_id, next_version - 1",
        )
        .bind(now)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| super::model_not_found(name))?;
        let model_id: String = row.get(0);
        let version: i64 = row.get(1);
        let location = location(&model_id, version);
        sqlx::query(
            "INSERT INTO model_versions (model_id, version, creation_timestamp, last_updated_timestamp, \
             description, stage, source, storage_location, run_id, status, status_message, lineage) \
             VALUES ($1, $2, $3, $3, $4, 'None', $5, $6, $7, $8, '', $9)",
        )
        .bind(&model_id)
        .bind(version)
        .bind(now)
        .bind(&new.description)
        .bind(&new.source)
        .bind(&location)
        .bind(&new.run_id)
        .bind(PENDING)
        .bind(new.lineage.encode_to_vec())
        .execute(&mut *tx)
        .await?;
        for t in &new.tags {
            sqlx::query(
                "INSERT INTO model_version_tags (model_id, version, key, value) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (model_id, version, key) DO UPDATE SET value = excluded.value",
            )
            .bind(&model_id)
            .bind(version)
            .bind(&t.key)
            .bind(&t.value)
            .execute(&mut *tx)
            .await?;
        }
        let _enqueued = self
            .outbox
            .enqueue(&mut tx, &created_event(name, new, &model_id, version, now))
            .await?;
        tx.commit().await?;
        Ok(Pending {
            model_id,
            name: name.to_owned(),
            version,
            created: now,
            location,
            run_id: new.run_id.clone(),
        })
    }

    /// [`Store::begin_version`]'s one statement (PostgreSQL); false when the model
    /// is not as `e` expects, and nothing was written.
    async fn begin_as_expected(
        &self,
        name: &str,
        new: &NewVersion,
        location: &str,
        e: &Expected,
        now: i64,
    ) -> Result<bool> {
        // The last value of a key given twice wins, as in the transaction.
        let tags = last_per_key(&new.tags);
        // Like the transaction's, this commit need not wait for its WAL flush (see
        // `begin_version`). A statement outside a transaction cannot be preceded by
        // `SET LOCAL` without another round trip, so the statement sets it itself:
        // `set_config(.., true)` lasts until its implicit transaction ends, after the
        // commit has read it, and only runs when the model's row is updated, that is
        // when the statement writes at all.
        let mut sql = String::from(
            "WITH m AS (UPDATE registered_models SET next_version = next_version + 1, \
             last_updated_timestamp = $1 WHERE name = $2 AND model_id = $3 AND next_version = $4 \
             RETURNING model_id, set_config('synchronous_commit', 'off', true)), \
             v AS (INSERT INTO model_versions (model_id, version, creation_timestamp, \
             last_updated_timestamp, description, stage, source, storage_location, run_id, status, \
             status_message, lineage) SELECT model_id, $4, $1, $1, $5, 'None', $6, $7, $8, $9, '', $10 \
             FROM m RETURNING model_id)",
        );
        let mut next = 11;
        if !tags.is_empty() {
            let values = (0..tags.len())
                .map(|i| format!("(${}, ${})", next + 2 * i, next + 2 * i + 1))
                .collect::<Vec<_>>()
                .join(", ");
            sql.push_str(&format!(
                ", t AS (INSERT INTO model_version_tags (model_id, version, key, value) \
                 SELECT v.model_id, $4, x.k, x.val FROM v, (VALUES {values}) AS x(k, val))"
            ));
            next += 2 * tags.len();
        }
        sql.push(' ');
        sql.push_str(&self.outbox.insert_from("v", next));
        let created = created_event(name, new, &e.model_id, e.next_version, now);
        let mut q = sqlx::query(&sql)
            .bind(now)
            .bind(name)
            .bind(&e.model_id)
            .bind(e.next_version)
            .bind(&new.description)
            .bind(&new.source)
            .bind(location)
            .bind(&new.run_id)
            .bind(PENDING)
            .bind(new.lineage.encode_to_vec());
        for t in tags {
            q = q.bind(&t.key).bind(&t.value);
        }
        let done = self
            .outbox
            .bind_event(q, &created)
            .execute(self.db.writer())
            .await
            .map_err(|e| self.db.classify(e))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let _enqueued = self.outbox.enqueued();
        Ok(true)
    }

    /// Step two, success: the files are in place and the signature read. Returns
    /// the time it was marked READY.
    pub async fn version_ready(
        &self,
        p: &Pending,
        signature: Option<&pb::Signature>,
        files: &[(String, u64)],
    ) -> Result<i64> {
        let size: u64 = files.iter().map(|f| f.1).sum();
        let now = now_millis();
        let (format, model_file) = signature
            .map(|s| (s.format.clone(), s.file.clone()))
            .unwrap_or_default();
        let ready = event(
            &p.model_id,
            format!("{}/{}", p.name, p.version),
            &ev::ModelVersionReady {
                model_id: p.model_id.clone(),
                name: p.name.clone(),
                version: p.version,
                storage_location: p.location.clone(),
                model_file,
                format,
                run_id: p.run_id.clone(),
            },
        );
        let signature = signature.map(|s| s.encode_to_vec());
        let files = serde_json::to_string(files).unwrap_or_else(|_| "[]".into());
        let wrote = self
            .outbox
            .write_with(
                &self.db,
                "UPDATE model_versions SET status = $1, signature = $2, size_bytes = $3, files = $4, \
                 last_updated_timestamp = $5 WHERE model_id = $6 AND version = $7 AND status = $8 \
                 RETURNING version",
                8,
                |q| {
                    q.bind(READY)
                        .bind(signature)
                        .bind(size as i64)
                        .bind(files)
                        .bind(now)
                        .bind(p.model_id.clone())
                        .bind(p.version)
                        .bind(PENDING)
                },
                &ready,
            )
            .await?;
        if !wrote {
            return Err(precondition(format!(
                "model `{}` version {} stopped being PENDING_REGISTRATION while its files were copied \
                 (deleted, or timed out)",
                p.name, p.version
            )));
        }
        self.registration_finished("ready", p, now);
        Ok(now)
    }

    /// Counts a registration that ended `status` (ready, failed) and its duration.
    fn registration_finished(&self, status: &str, p: &Pending, now: i64) {
        self.metrics
            .versions_registered
            .with_label_values(&[status])
            .inc();
        self.metrics
            .registration_seconds
            .observe((now - p.created).max(0) as f64 / 1000.0);
    }

    /// Step two, failure: the version becomes FAILED_REGISTRATION with `reason`.
    pub async fn version_failed(&self, p: &Pending, reason: &str) -> Result<()> {
        let now = now_millis();
        let failed = event(
            &p.model_id,
            format!("{}/{}", p.name, p.version),
            &ev::ModelVersionFailed {
                model_id: p.model_id.clone(),
                name: p.name.clone(),
                version: p.version,
                reason: reason.to_owned(),
            },
        );
        let wrote = self
            .outbox
            .write_with(
                &self.db,
                "UPDATE model_versions SET status = $1, status_message = $2, last_updated_timestamp = $3 \
                 WHERE model_id = $4 AND version = $5 AND status = $6 RETURNING version",
                6,
                |q| {
                    q.bind(FAILED)
                        .bind(reason.to_owned())
                        .bind(now)
                        .bind(p.model_id.clone())
                        .bind(p.version)
                        .bind(PENDING)
                },
                &failed,
            )
            .await?;
        if !wrote {
            return Ok(());
        }
        self.registration_finished("failed", p, now);
        Ok(())
    }

    /// Marks versions PENDING for longer than `timeout_ms` as failed (their
    /// registration was cut off, e.g. by a crash). Returns how many.
    pub async fn expire_pending(&self, timeout_ms: i64) -> Result<usize> {
        let cutoff = now_millis() - timeout_ms;
        let rows = sqlx::query(
            "SELECT v.model_id, m.name, v.version, v.creation_timestamp, v.storage_location, v.run_id \
             FROM model_versions v \
             JOIN registered_models m ON m.model_id = v.model_id \
             WHERE v.status = $1 AND v.creation_timestamp < $2",
        )
        .bind(PENDING)
        .bind(cutoff)
        .fetch_all(self.db.reader())
        .await?;
        for r in &rows {
            let p = Pending {
                model_id: r.get(0),
                name: r.get(1),
                version: r.get(2),
                created: r.get(3),
                location: r.get(4),
                run_id: r.get(5),
            };
            self.version_failed(
                &p,
                &format!(
                    "registration did not finish within {} s (the registry stopped while copying the files); \
                     register the model again",
                    timeout_ms / 1000
                ),
            )
            .await?;
        }
        Ok(rows.len())
    }
}
