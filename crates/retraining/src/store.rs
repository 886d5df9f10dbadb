//! Policies and retrains. A retrain's every transition, its history row and its event go
//! in one transaction (the event through the outbox), and a transition only happens from
//! the state its caller saw, so a step done twice (a redelivery, a replica that lost its
//! lease) changes nothing the second time.

use std::collections::BTreeMap;

use mlops_events::outbox::Outbox;
use mlops_events::Envelope;
use mlops_proto::events::topics;
use mlops_proto::retraining::v1 as pb;
use mlops_storage::{now_millis, Db, Migration};
use prost::Message;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::error::{Result, RetrainingError};
use crate::policy::{self, Trigger};
use crate::schedule::Fire;

/// The schema.
pub fn migrations() -> Vec<Migration> {
    vec![
        Migration {
            version: 1,
            name: "policies, retrains and their transitions".into(),
            sqlite: include_str!("../migrations/sqlite/0001_init.sql").into(),
            postgres: include_str!("../migrations/postgres/0001_init.sql").into(),
        },
        Migration {
            version: 2,
            name: "the fire times of the policies' schedules handled".into(),
            sqlite: include_str!("../migrations/sqlite/0002_schedule.sql").into(),
            postgres: include_str!("../migrations/postgres/0002_schedule.sql").into(),
        },
    ]
}

/// The `ce_source` of the service's events.
pub const SOURCE: &str = "/mlops/retraining";

/// What a retrain learned on its way, kept with it (JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// The training window's start, ms since the epoch (0: none).
    #[serde(default)]
    pub window_start_ms: i64,
    /// The evaluation set's name and digest.
    #[serde(default)]
    pub dataset: String,
    #[serde(default)]
    pub dataset_digest: String,
    #[serde(default)]
    pub candidate_metrics: BTreeMap<String, f64>,
    #[serde(default)]
    pub champion_metrics: BTreeMap<String, f64>,
    /// When the canary started, ms since the epoch.
    #[serde(default)]
    pub canary_started_ms: i64,
    /// When the trainer's next attempt may start (its backoff), ms since the epoch.
    #[serde(default)]
    pub next_attempt_ms: i64,
    /// Failed trainer attempts.
    #[serde(default)]
    pub failures: i64,
    /// The attempt whose failure was counted last (0: none).
    #[serde(default)]
    pub failed_attempt: i64,
    /// The process id of the local trainer (to stop one an earlier process left).
    #[serde(default)]
    pub trainer_pid: u32,
}

/// A stored retrain.
#[derive(Debug, Clone, PartialEq)]
pub struct Retrain {
    pub id: String,
    pub model: String,
    pub state: String,
    pub trigger: String,
    pub trigger_detail: String,
    pub policy: pb::Policy,
    pub policy_version: i64,
    pub run_id: String,
    pub version: i64,
    pub champion_version: i64,
    pub reason: String,
    pub attempts: i64,
    pub facts: Facts,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a transition changes besides the state.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub reason: String,
    pub run_id: Option<String>,
    pub version: Option<i64>,
    pub champion_version: Option<i64>,
    pub attempts: Option<i64>,
    pub facts: Option<Facts>,
}

impl Change {
    /// A change with only a reason.
    pub fn because(reason: impl Into<String>) -> Self {
        Change {
            reason: reason.into(),
            ..Default::default()
        }
    }
}

/// Why a trigger did not start a retrain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The model has no policy.
    NoPolicy,
    /// Inside the cooldown, until this time (ms).
    Cooldown(i64),
    /// As many retrains are under way as the policy allows.
    Busy(u32),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::NoPolicy => write!(f, "the model has no retraining policy"),
            Refused::Cooldown(until) => write!(
                f,
                "the policy's cooldown runs until {} (use force to start anyway)",
                chrono::DateTime::from_timestamp_millis(*until)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default()
            ),
            Refused::Busy(n) => write!(
                f,
                "{n} retrain(s) of the model are under way, the most its policy allows (max_concurrent)"
            ),
        }
    }
}

const RETRAIN_COLUMNS: &str =
    "id, model, state, trigger_kind, trigger_detail, policy, policy_version, run_id, \
     version, champion_version, reason, attempts, facts, created_at, updated_at";

/// Policies and retrains in the service's database.
#[derive(Clone)]
pub struct Store {
    db: Db,
    outbox: Outbox,
}

impl Store {
    /// The store over `db` (migrated).
    pub fn new(db: Db) -> Self {
        Store {
            db,
            outbox: Outbox::new("retraining"),
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Creates or replaces the policy of its model; answers it with its new version. A new
    /// schedule (or a new policy) counts its fire times from now.
    pub async fn set_policy(&self, mut p: pb::Policy) -> Result<pb::Policy> {
        policy::validate(&p)?;
        p.model = p.model.trim().to_owned();
        if let Some(t) = p.triggers.as_mut() {
            t.schedule = t.schedule.trim().to_owned();
            t.time_zone = t.time_zone.trim().to_owned();
        }
        let schedule_of = |p: &pb::Policy| p.triggers.clone().map(|t| (t.schedule, t.time_zone));
        let now = now_millis();
        let mut tx = self.db.begin().await?;
        let old: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT version, policy FROM retraining_policies WHERE model = $1")
                .bind(&p.model)
                .fetch_optional(&mut *tx)
                .await?;
        p.version = old.as_ref().map_or(0, |o| o.0) + 1;
        p.updated_at = now;
        let bytes = p.encode_to_vec();
        if let Some((_, old)) = old {
            let rescheduled =
                decode_policy(&old).map_or(true, |o| schedule_of(&o) != schedule_of(&p));
            sqlx::query(
                "UPDATE retraining_policies SET policy = $2, version = $3, updated_at = $4, \
                 schedule_handled_until = CASE WHEN $5 = 1 THEN $4 ELSE schedule_handled_until END \
                 WHERE model = $1",
            )
            .bind(&p.model)
            .bind(bytes)
            .bind(p.version)
            .bind(now)
            .bind(i64::from(rescheduled))
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "INSERT INTO retraining_policies \
                 (model, policy, version, last_started_at, updated_at, schedule_handled_until) \
                 VALUES ($1, $2, $3, 0, $4, $4)",
            )
            .bind(&p.model)
            .bind(bytes)
            .bind(p.version)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(p)
    }

    /// The policy of `model`.
    pub async fn policy(&self, model: &str) -> Result<Option<pb::Policy>> {
        let bytes: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT policy FROM retraining_policies WHERE model = $1")
                .bind(model)
                .fetch_optional(self.db.reader())
                .await?;
        bytes.map(|b| decode_policy(&b)).transpose()
    }

    /// Every policy, by model.
    pub async fn policies(&self) -> Result<Vec<pb::Policy>> {
        let rows: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT policy FROM retraining_policies ORDER BY model")
                .fetch_all(self.db.reader())
                .await?;
        rows.iter().map(|b| decode_policy(b)).collect()
    }

    /// The policies with a schedule, each with the time (ms) up to which its fire times are
    /// handled.
    pub async fn schedules(&self) -> Result<Vec<(pb::Policy, i64)>> {
        let rows = sqlx::query(
            "SELECT policy, schedule_handled_until FROM retraining_policies ORDER BY model",
        )
        .fetch_all(self.db.reader())
        .await?;
        let mut scheduled = vec![];
        for row in rows {
            let p = decode_policy(&row.try_get::<Vec<u8>, _>(0)?)?;
            if p.triggers.as_ref().is_some_and(|t| !t.schedule.is_empty()) {
                scheduled.push((p, row.try_get(1)?));
            }
        }
        Ok(scheduled)
    }

    /// Starts the retrain of a scheduled fire of `model`'s policy, whose fire times were
    /// handled up to `handled` (ms), and marks them handled up to `now`, in one
    /// transaction; the mark is a compare-and-set from `handled`, so of two replicas
    /// firing at once one starts the retrain and the other changes nothing.
    pub async fn fire_schedule(
        &self,
        model: &str,
        handled: i64,
        now: i64,
        trigger: &Trigger,
    ) -> Result<Fire> {
        let mut tx = self.db.begin().await?;
        if !mark_handled(&mut tx, model, handled, now).await? {
            return Ok(Fire::Handled);
        }
        let refused = match self.start_in(&mut tx, model, trigger, false).await? {
            Ok((r, enqueued)) => {
                tx.commit().await?;
                drop(enqueued);
                return Ok(Fire::Started(Box::new(r)));
            }
            Err(refused) => refused,
        };
        // only the mark: not what the refused start wrote (its cooldown's clock)
        tx.rollback().await?;
        let mut tx = self.db.begin().await?;
        if !mark_handled(&mut tx, model, handled, now).await? {
            return Ok(Fire::Handled);
        }
        tx.commit().await?;
        Ok(Fire::Refused(refused))
    }

    /// Deletes the policy of `model`; false when it had none.
    pub async fn delete_policy(&self, model: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM retraining_policies WHERE model = $1")
            .bind(model)
            .execute(self.db.writer())
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// Starts a retrain of `model` for `trigger` in `tx` (the caller commits), unless the
    /// policy's cooldown or its limit of concurrent retrains refuses it (`force` skips the
    /// cooldown).
    pub async fn start_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        model: &str,
        trigger: &Trigger,
        force: bool,
    ) -> Result<std::result::Result<(Retrain, mlops_events::outbox::Enqueued), Refused>> {
        let row = sqlx::query(
            "SELECT policy, version, last_started_at FROM retraining_policies WHERE model = $1",
        )
        .bind(model)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else {
            return Ok(Err(Refused::NoPolicy));
        };
        let policy = decode_policy(&row.try_get::<Vec<u8>, _>(0)?)?;
        let (policy_version, last): (i64, i64) = (row.try_get(1)?, row.try_get(2)?);
        let now = now_millis();
        let until = last.saturating_add(policy.cooldown_seconds.saturating_mul(1000));
        if !force && policy.cooldown_seconds > 0 && last > 0 && now < until {
            return Ok(Err(Refused::Cooldown(until)));
        }
        // compare-and-set on the cooldown's clock: of two replicas starting one model's
        // retrain at once, one wins, and on PostgreSQL the row stays locked to the commit
        let won = sqlx::query(
            "UPDATE retraining_policies SET last_started_at = $3 WHERE model = $1 AND last_started_at = $2",
        )
        .bind(model)
        .bind(last)
        .bind(now.max(last + 1))
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if won == 0 {
            return Ok(Err(Refused::Cooldown(until.max(now))));
        }
        let max = policy.max_concurrent.max(1);
        let active: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM retraining_retrains WHERE model = $1 AND active = 1",
        )
        .bind(model)
        .fetch_one(&mut **tx)
        .await?;
        if active >= i64::from(max) {
            // nothing starts: the cooldown's clock goes back (the caller may commit)
            sqlx::query("UPDATE retraining_policies SET last_started_at = $2 WHERE model = $1")
                .bind(model)
                .bind(last)
                .execute(&mut **tx)
                .await?;
            return Ok(Err(Refused::Busy(max)));
        }
        let window = policy
            .data
            .as_ref()
            .and_then(|d| d.training.as_ref())
            .map_or(0, |t| t.window_seconds);
        let r = Retrain {
            id: uuid::Uuid::new_v4().simple().to_string(),
            model: model.to_owned(),
            state: policy::TRIGGERED.to_owned(),
            trigger: trigger.kind.to_owned(),
            trigger_detail: trigger.detail.clone(),
            policy_version,
            policy,
            run_id: String::new(),
            version: 0,
            champion_version: 0,
            reason: trigger.detail.clone(),
            attempts: 0,
            facts: Facts {
                window_start_ms: if window > 0 {
                    now - window.saturating_mul(1000)
                } else {
                    0
                },
                ..Default::default()
            },
            created_at: now,
            updated_at: now,
        };
        sqlx::query(&format!(
            "INSERT INTO retraining_retrains ({RETRAIN_COLUMNS}, active, owner, lease_until) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 1, '', 0)"
        ))
        .bind(&r.id)
        .bind(&r.model)
        .bind(&r.state)
        .bind(&r.trigger)
        .bind(&r.trigger_detail)
        .bind(r.policy.encode_to_vec())
        .bind(r.policy_version)
        .bind(&r.run_id)
        .bind(r.version)
        .bind(r.champion_version)
        .bind(&r.reason)
        .bind(r.attempts)
        .bind(facts_json(&r.facts))
        .bind(r.created_at)
        .bind(r.updated_at)
        .execute(&mut **tx)
        .await?;
        insert_transition(tx, &r.id, 0, &r.state, &r.reason, now).await?;
        let event = mlops_proto::events::v1::RetrainRequested {
            retrain_id: r.id.clone(),
            model: r.model.clone(),
            trigger: r.trigger.clone(),
            trigger_detail: r.trigger_detail.clone(),
            policy_version: r.policy_version,
        };
        let enqueued = self.outbox.enqueue(tx, &envelope(&r, &event)).await?;
        Ok(Ok((r, enqueued)))
    }

    /// Starts a retrain in its own transaction (a manual trigger).
    pub async fn start(
        &self,
        model: &str,
        trigger: &Trigger,
        force: bool,
    ) -> Result<std::result::Result<Retrain, Refused>> {
        let mut tx = self.db.begin().await?;
        match self.start_in(&mut tx, model, trigger, force).await? {
            Ok((r, enqueued)) => {
                tx.commit().await?;
                drop(enqueued);
                Ok(Ok(r))
            }
            Err(refused) => Ok(Err(refused)),
        }
    }

    /// Moves `r` from the state it is in to `to`, with `change`, its history row and
    /// `event`; false (and nothing changed) when it had left that state already.
    pub async fn advance<M: prost::Name + prost::Message>(
        &self,
        r: &Retrain,
        to: &str,
        change: Change,
        event: &M,
    ) -> Result<bool> {
        let now = now_millis();
        let mut tx = self.db.begin().await?;
        let facts = change.facts.as_ref().unwrap_or(&r.facts);
        let n = sqlx::query(
            "UPDATE retraining_retrains SET state = $3, active = $4, run_id = $5, version = $6, \
             champion_version = $7, reason = $8, attempts = $9, facts = $10, updated_at = $11 \
             WHERE id = $1 AND state = $2",
        )
        .bind(&r.id)
        .bind(&r.state)
        .bind(to)
        .bind(i64::from(!policy::is_terminal(to)))
        .bind(change.run_id.as_ref().unwrap_or(&r.run_id))
        .bind(change.version.unwrap_or(r.version))
        .bind(change.champion_version.unwrap_or(r.champion_version))
        .bind(&change.reason)
        .bind(change.attempts.unwrap_or(r.attempts))
        .bind(facts_json(facts))
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        let seq: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(seq), -1) + 1 FROM retraining_transitions WHERE retrain_id = $1",
        )
        .bind(&r.id)
        .fetch_one(&mut *tx)
        .await?;
        insert_transition(&mut tx, &r.id, seq, to, &change.reason, now).await?;
        let _enqueued = self.outbox.enqueue(&mut tx, &envelope(r, event)).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Saves what a retrain learned without changing its state (no event).
    pub async fn note(
        &self,
        r: &Retrain,
        attempts: i64,
        facts: &Facts,
        reason: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE retraining_retrains SET attempts = $3, facts = $4, reason = $5, updated_at = $6 \
             WHERE id = $1 AND state = $2",
        )
        .bind(&r.id)
        .bind(&r.state)
        .bind(attempts)
        .bind(facts_json(facts))
        .bind(reason)
        .bind(now_millis())
        .execute(self.db.writer())
        .await?;
        Ok(())
    }

    /// The active retrains this replica drives: those it holds, and those whose lease ran
    /// out (another replica stopped); each lease is renewed for `lease_ms`.
    pub async fn claim(&self, replica: &str, lease_ms: i64) -> Result<Vec<Retrain>> {
        let now = now_millis();
        sqlx::query(
            "UPDATE retraining_retrains SET owner = $1, lease_until = $2 \
             WHERE active = 1 AND (owner = $1 OR lease_until < $3)",
        )
        .bind(replica)
        .bind(now + lease_ms)
        .bind(now)
        .execute(self.db.writer())
        .await?;
        let rows = sqlx::query(&format!(
            "SELECT {RETRAIN_COLUMNS} FROM retraining_retrains WHERE active = 1 AND owner = $1 \
             ORDER BY created_at"
        ))
        .bind(replica)
        .fetch_all(self.db.writer())
        .await?;
        rows.iter().map(retrain_of).collect()
    }

    /// Gives up the leases of `replica` (it stops), so another takes its retrains at once.
    pub async fn release(&self, replica: &str) -> Result<()> {
        sqlx::query(
            "UPDATE retraining_retrains SET lease_until = 0 WHERE owner = $1 AND active = 1",
        )
        .bind(replica)
        .execute(self.db.writer())
        .await?;
        Ok(())
    }

    /// One retrain.
    pub async fn retrain(&self, id: &str) -> Result<Option<Retrain>> {
        let row = sqlx::query(&format!(
            "SELECT {RETRAIN_COLUMNS} FROM retraining_retrains WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.db.reader())
        .await?;
        row.as_ref().map(retrain_of).transpose()
    }

    /// A model's retrains (or every model's), newest first.
    pub async fn retrains(&self, model: &str, limit: i64) -> Result<Vec<Retrain>> {
        let rows = if model.is_empty() {
            sqlx::query(&format!(
                "SELECT {RETRAIN_COLUMNS} FROM retraining_retrains ORDER BY created_at DESC, id LIMIT $1"
            ))
            .bind(limit)
            .fetch_all(self.db.reader())
            .await?
        } else {
            sqlx::query(&format!(
                "SELECT {RETRAIN_COLUMNS} FROM retraining_retrains WHERE model = $1 \
                 ORDER BY created_at DESC, id LIMIT $2"
            ))
            .bind(model)
            .bind(limit)
            .fetch_all(self.db.reader())
            .await?
        };
        rows.iter().map(retrain_of).collect()
    }

    /// A retrain's transitions, in order.
    pub async fn transitions(&self, id: &str) -> Result<Vec<pb::Transition>> {
        let rows = sqlx::query(
            "SELECT state, at, reason FROM retraining_transitions WHERE retrain_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(self.db.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(pb::Transition {
                    state: r.try_get(0)?,
                    time: r.try_get(1)?,
                    reason: r.try_get(2)?,
                })
            })
            .collect()
    }
}

/// The event of a retrain's transition.
pub fn envelope<M: prost::Name + prost::Message>(r: &Retrain, event: &M) -> Envelope {
    Envelope::of(
        topics::RETRAINING,
        SOURCE,
        &r.model,
        format!("retrains/{}", r.id),
        event,
    )
}

/// Moves `model`'s schedule mark from `handled` to `now`; false when it was not at `handled`.
async fn mark_handled(
    tx: &mut Transaction<'static, Any>,
    model: &str,
    handled: i64,
    now: i64,
) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE retraining_policies SET schedule_handled_until = $3 \
         WHERE model = $1 AND schedule_handled_until = $2",
    )
    .bind(model)
    .bind(handled)
    .bind(now.max(handled + 1))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

async fn insert_transition(
    tx: &mut Transaction<'static, Any>,
    id: &str,
    seq: i64,
    state: &str,
    reason: &str,
    at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO retraining_transitions (retrain_id, seq, state, reason, at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(seq)
    .bind(state)
    .bind(reason)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn decode_policy(bytes: &[u8]) -> Result<pb::Policy> {
    pb::Policy::decode(bytes)
        .map_err(|e| RetrainingError::Internal(format!("a stored policy does not decode: {e}")))
}

fn facts_json(f: &Facts) -> String {
    serde_json::to_string(f).expect("facts serialize")
}

fn retrain_of(row: &AnyRow) -> Result<Retrain> {
    let facts: String = row.try_get(12)?;
    Ok(Retrain {
        id: row.try_get(0)?,
        model: row.try_get(1)?,
        state: row.try_get(2)?,
        trigger: row.try_get(3)?,
        trigger_detail: row.try_get(4)?,
        policy: decode_policy(&row.try_get::<Vec<u8>, _>(5)?)?,
        policy_version: row.try_get(6)?,
        run_id: row.try_get(7)?,
        version: row.try_get(8)?,
        champion_version: row.try_get(9)?,
        reason: row.try_get(10)?,
        attempts: row.try_get(11)?,
        facts: serde_json::from_str(&facts)
            .map_err(|e| RetrainingError::Internal(format!("a retrain's facts: {e}")))?,
        created_at: row.try_get(13)?,
        updated_at: row.try_get(14)?,
    })
}
