//! The gRPC front of the monitoring service.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use mlops_events::Envelope;
use mlops_proto::events::{topics, v1 as events};
use mlops_proto::monitoring::v1 as pb;
use mlops_proto::monitoring::v1::monitoring_service_server::MonitoringService;
use mlops_runtime::auth::{Role, RoleTable};
use mlops_storage::blob::BlobStore;
use mlops_storage::now_millis;
use object_store::path::Path;
use tonic::{Request, Response, Status, Streaming};

use crate::drift::{ColumnType, DatasetDrift};
use crate::error::{MonitoringError, Result};
use crate::metrics::Metrics;
use crate::references::References;
use crate::report::{self, ReportError};
use crate::store::{ColumnProfile, MonitorSpec, Reference, Report, Store, WindowSource};
use crate::table::{self, Batches, Columns, ParquetTable, TableError};

mod requests;

pub use requests::report_to_pb;
use requests::{check_name, checked, fits, invalid, monitor_to_pb, reference_to_pb, Ask};

/// The role each RPC needs (a test checks the table against the contract).
pub const ROLES: RoleTable = &[
    ("CreateMonitor", Role::Writer),
    ("UpdateMonitor", Role::Writer),
    ("GetMonitor", Role::Reader),
    ("ListMonitors", Role::Reader),
    ("DeleteMonitor", Role::Writer),
    ("UploadReference", Role::Writer),
    ("PushWindow", Role::Writer),
    ("GetReport", Role::Reader),
    ("ListReports", Role::Reader),
    ("PushLabels", Role::Writer),
    ("ListPerformance", Role::Reader),
    ("CaptureReference", Role::Writer),
];

/// The most labels in one PushLabels call.
const MAX_LABELS: usize = 100_000;

type Answer<T> = std::result::Result<Response<T>, Status>;

/// The API.
#[derive(Clone)]
pub struct MonitoringApi {
    store: Store,
    references: BlobStore,
    /// Reference tables read once per version.
    loaded: References,
    tracker: crate::tracker::Tracker,
    metrics: Metrics,
    max_table_bytes: usize,
    workers: usize,
}

impl MonitoringApi {
    /// The API over `store`, keeping reference tables on `references`.
    pub fn new(
        store: Store,
        references: BlobStore,
        loaded: References,
        max_table_bytes: usize,
        workers: usize,
    ) -> Self {
        let metrics = Metrics::new();
        MonitoringApi {
            tracker: crate::tracker::Tracker::new(store.clone(), metrics.clone()),
            store,
            references,
            loaded,
            metrics,
            max_table_bytes,
            workers,
        }
    }
}

/// A table received in chunks.
enum Table {
    Parquet(ParquetTable),
    Ipc(Batches),
}

impl Table {
    fn columns(&self) -> &dyn Columns {
        match self {
            Table::Parquet(t) => t,
            Table::Ipc(t) => t,
        }
    }

    /// The table as Parquet, to store.
    fn parquet(&self, bytes: Bytes) -> Result<Bytes> {
        match self {
            Table::Parquet(_) => Ok(bytes),
            Table::Ipc(b) => b.to_parquet().map_err(|e| invalid(e.to_string())),
        }
    }
}

fn table_error(e: TableError) -> MonitoringError {
    invalid(e.to_string())
}

fn parse_table(format: i32, bytes: &Bytes, what: &str) -> Result<Table> {
    if bytes.is_empty() {
        return Err(invalid(format!(
            "the {what} is empty: send the table's bytes"
        )));
    }
    match pb::TableFormat::try_from(format) {
        Ok(pb::TableFormat::Parquet) => ParquetTable::new(bytes.clone())
            .map(Table::Parquet)
            .map_err(table_error),
        Ok(pb::TableFormat::ArrowIpc) => Batches::from_ipc(bytes).map(Table::Ipc).map_err(table_error),
        _ => Err(invalid(format!(
            "say the {what}'s format in the first message: TABLE_FORMAT_PARQUET or TABLE_FORMAT_ARROW_IPC"
        ))),
    }
}

impl MonitoringApi {
    /// Receives a streamed table: the first message's header, every message's chunk.
    async fn receive<M>(
        &self,
        mut stream: Streaming<M>,
        header: impl Fn(&M) -> (String, i32, String),
        data: impl Fn(M) -> Bytes,
    ) -> Result<((String, i32, String), Bytes)> {
        let first = stream
            .message()
            .await
            .map_err(|s| invalid(format!("reading the stream: {}", s.message())))?
            .ok_or_else(|| invalid("the stream is empty: the first message names the monitor"))?;
        let head = header(&first);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&data(first));
        while let Some(m) = stream
            .message()
            .await
            .map_err(|s| invalid(format!("reading the stream: {}", s.message())))?
        {
            let chunk = data(m);
            if buf.len() + chunk.len() > self.max_table_bytes {
                return Err(invalid(format!(
                    "the table is over the server's limit of {} bytes (max_table_bytes): send a smaller sample",
                    self.max_table_bytes
                )));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok((head, buf.freeze()))
    }

    async fn upload_reference(
        &self,
        stream: Streaming<pb::UploadReferenceRequest>,
    ) -> Result<Reference> {
        let ((monitor, format, _), bytes) = self
            .receive(
                stream,
                |m| (m.monitor.clone(), m.format, String::new()),
                |m| m.data,
            )
            .await?;
        check_name(&monitor)?;
        let m = self.store.monitor(&monitor).await?;
        let table = parse_table(format, &bytes, "reference")?;
        let spec = m.spec.clone();
        let (table, profile, rows, cbpe) = tokio::task::spawn_blocking(move || {
            let profile = profile_of(table.columns(), &spec)?;
            let rows = table.columns().rows() as i64;
            let cbpe = match &spec.performance {
                Some(p) => crate::outcomes::fit(p, table.columns()).map_err(invalid)?,
                None => None,
            };
            Ok::<_, MonitoringError>((table, profile, rows, cbpe))
        })
        .await
        .map_err(|e| MonitoringError::Internal(format!("profiling the reference: {e}")))??;
        if rows == 0 {
            return Err(invalid("the reference has no rows"));
        }
        let parquet = table.parquet(bytes)?;
        self.loaded
            .save(
                &self.store,
                &monitor,
                parquet,
                rows,
                &profile,
                cbpe.as_ref(),
                None,
            )
            .await
            .map(|r| r.expect("an upload is not a capture"))
    }

    async fn push_window(&self, stream: Streaming<pb::PushWindowRequest>) -> Result<Report> {
        let ((monitor, format, model_version), bytes) = self
            .receive(
                stream,
                |m| (m.monitor.clone(), m.format, m.model_version.clone()),
                |m| m.data,
            )
            .await?;
        check_name(&monitor)?;
        let started = std::time::Instant::now();
        let m = self.store.monitor(&monitor).await?;
        if m.reference_version == 0 {
            return Err(MonitoringError::FailedPrecondition(format!(
                "monitor {monitor:?} has no reference yet: upload one first (UploadReference)"
            )));
        }
        let window = parse_table(format, &bytes, "window")?;
        let rows = window.columns().rows() as i64;
        if rows == 0 {
            return Err(invalid("the window has no rows: nothing to compare"));
        }
        // read once per reference version, then kept
        let loaded = self
            .loaded
            .get(&self.store, &monitor, m.reference_version)
            .await?;
        let reference = loaded.reference.clone();
        let options = m.spec.options.clone();
        let workers = self.workers;
        let drift = tokio::task::spawn_blocking(move || {
            let columns: Vec<(&str, ColumnType, &crate::drift::Sample)> = loaded
                .reference
                .profile
                .iter()
                .zip(&loaded.samples)
                .map(|(c, s)| (c.name.as_str(), c.column_type, s))
                .collect();
            let types: BTreeMap<String, ColumnType> = columns
                .iter()
                .map(|(n, t, _)| ((*n).to_owned(), *t))
                .collect();
            report::drift_against(&columns, window.columns(), &options, workers)
                .map_err(|e| window_error(e, &types))
        })
        .await
        .map_err(|e| MonitoringError::Internal(format!("testing the window: {e}")))??;
        let report = Report {
            id: uuid::Uuid::new_v4().to_string(),
            monitor: monitor.clone(),
            reference_version: reference.version,
            model_version,
            rows,
            drift,
            event_published: false,
            created_at_ms: now_millis(),
            source: WindowSource::Push,
        };
        let model = m.model.clone();
        let saved = self
            .store
            .save_report(report, |r| drift_event(&model, r))
            .await?;
        self.metrics.report(
            &monitor,
            &m.model,
            &saved.model_version,
            saved.rows,
            &saved.drift,
        );
        if saved.event_published {
            self.metrics
                .drift_events
                .with_label_values(&[&monitor])
                .inc();
        }
        self.metrics
            .report_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(saved)
    }
}

/// A report error as the caller should read it: a window that does not match the
/// reference names the column and both types.
fn window_error(e: ReportError, types: &BTreeMap<String, ColumnType>) -> MonitoringError {
    match e {
        ReportError::Table(TableError::Unsupported { column, ty }) => {
            let expected = types.get(&column).map_or("a numerical or categorical", |t| t.name());
            invalid(format!(
                "column {column:?} is {expected} in the reference, but the window's column has type {ty}"
            ))
        }
        ReportError::Table(TableError::Missing { column, side }) => invalid(format!(
            "column {column:?} is in the reference but not in the {side}: every monitored column must be in the window"
        )),
        other => invalid(other.to_string()),
    }
}

/// The profile of a reference: the monitored columns (every column when the monitor
/// names none) with their types, counts and distinct values; a column of a type no
/// method takes, or whose asked method does not fit it, is an error.
pub(crate) fn profile_of(table: &dyn Columns, spec: &MonitorSpec) -> Result<Vec<ColumnProfile>> {
    let specs = if spec.columns.is_empty() {
        report::inferred(table.names())
    } else {
        spec.columns.clone()
    };
    let mut out = Vec::with_capacity(specs.len());
    for s in specs {
        let array = table.column(&s.name, "reference").map_err(table_error)?;
        let ty = match s.column_type {
            Some(t) => t,
            None => table::infer_type(&s.name, array.as_ref()).map_err(table_error)?,
        };
        fits(&spec.options, &s.name, ty)?;
        let sample = table::to_sample(&s.name, array.as_ref(), ty).map_err(table_error)?;
        out.push(ColumnProfile {
            name: s.name,
            column_type: ty,
            count: sample.len(),
            missing: sample.missing(),
            distinct: sample.distinct() as u64,
        });
    }
    if out.is_empty() {
        return Err(invalid("the reference has no columns"));
    }
    Ok(out)
}

/// The `DriftDetected` event of a report.
pub(crate) fn drift_event(model: &str, r: &Report) -> Envelope {
    let d: &DatasetDrift = &r.drift;
    let msg = events::DriftDetected {
        monitor: r.monitor.clone(),
        model: model.to_owned(),
        model_version: r.model_version.clone(),
        report_id: r.id.clone(),
        reference_version: r.reference_version,
        window_rows: r.rows,
        share: d.share,
        drift_share: d.drift_share,
        columns: d
            .columns
            .iter()
            .filter(|(_, c)| c.drifted)
            .map(|(name, c)| events::DriftedColumn {
                column: name.clone(),
                method: c.method.name().to_owned(),
                score: c.adjusted_score.or(c.score).unwrap_or(f64::NAN),
                threshold: c.threshold,
            })
            .collect(),
    };
    Envelope::of(
        topics::MONITORING,
        "/mlops/monitoring",
        &r.monitor,
        format!("monitors/{}", r.monitor),
        &msg,
    )
}

#[tonic::async_trait]
impl MonitoringService for MonitoringApi {
    async fn create_monitor(&self, req: Request<pb::CreateMonitorRequest>) -> Answer<pb::Monitor> {
        let r = req.into_inner();
        let spec = checked(Ask {
            name: &r.name,
            model: &r.model,
            cooldown_seconds: r.cooldown_seconds,
            columns: &r.columns,
            options: r.options.as_ref(),
            prediction_log: r.prediction_log.as_ref(),
            performance: r.performance.as_ref(),
        })?;
        let m = self
            .store
            .create_monitor(&r.name, &r.model, &spec, r.cooldown_seconds)
            .await?;
        Ok(Response::new(monitor_to_pb(&m)))
    }

    async fn update_monitor(&self, req: Request<pb::UpdateMonitorRequest>) -> Answer<pb::Monitor> {
        let r = req.into_inner();
        let spec = checked(Ask {
            name: &r.name,
            model: &r.model,
            cooldown_seconds: r.cooldown_seconds,
            columns: &r.columns,
            options: r.options.as_ref(),
            prediction_log: r.prediction_log.as_ref(),
            performance: r.performance.as_ref(),
        })?;
        let m = self
            .store
            .update_monitor(&r.name, &r.model, &spec, r.cooldown_seconds)
            .await?;
        if spec.prediction_log.is_none() {
            self.store.drop_open_windows(&r.name).await?;
            if m.capture.is_some() {
                self.store.stop_capture(&r.name).await?;
                return Ok(Response::new(monitor_to_pb(
                    &self.store.monitor(&r.name).await?,
                )));
            }
        }
        Ok(Response::new(monitor_to_pb(&m)))
    }

    async fn get_monitor(&self, req: Request<pb::GetMonitorRequest>) -> Answer<pb::Monitor> {
        let m = self.store.monitor(&req.into_inner().name).await?;
        Ok(Response::new(monitor_to_pb(&m)))
    }

    async fn list_monitors(
        &self,
        _req: Request<pb::ListMonitorsRequest>,
    ) -> Answer<pb::ListMonitorsResponse> {
        let monitors = self.store.monitors().await?;
        Ok(Response::new(pb::ListMonitorsResponse {
            monitors: monitors.iter().map(monitor_to_pb).collect(),
        }))
    }

    async fn delete_monitor(
        &self,
        req: Request<pb::DeleteMonitorRequest>,
    ) -> Answer<pb::DeleteMonitorResponse> {
        let name = req.into_inner().name;
        let keys = self.store.delete_monitor(&name).await?;
        let deleted = keys.is_some();
        for key in keys.into_iter().flatten() {
            if let Ok(p) = Path::parse(&key) {
                if let Err(e) = self.references.store.delete(&p).await {
                    tracing::warn!(key, error = %e, "could not remove a deleted monitor's reference");
                }
            }
        }
        Ok(Response::new(pb::DeleteMonitorResponse { deleted }))
    }

    async fn upload_reference(
        &self,
        req: Request<Streaming<pb::UploadReferenceRequest>>,
    ) -> Answer<pb::Reference> {
        let r = self.upload_reference(req.into_inner()).await?;
        Ok(Response::new(reference_to_pb(&r)))
    }

    async fn push_window(
        &self,
        req: Request<Streaming<pb::PushWindowRequest>>,
    ) -> Answer<pb::DriftReport> {
        let r = self.push_window(req.into_inner()).await?;
        Ok(Response::new(report_to_pb(&r, true)))
    }

    async fn get_report(&self, req: Request<pb::GetReportRequest>) -> Answer<pb::DriftReport> {
        let r = req.into_inner();
        let report = self.store.report(&r.monitor, &r.id).await?;
        Ok(Response::new(report_to_pb(&report, true)))
    }

    async fn push_labels(
        &self,
        req: Request<pb::PushLabelsRequest>,
    ) -> Answer<pb::PushLabelsResponse> {
        let r = req.into_inner();
        check_name(&r.monitor)?;
        if r.labels.len() > MAX_LABELS {
            return Err(invalid(format!(
                "{} labels in one call: send at most {MAX_LABELS} per call",
                r.labels.len()
            ))
            .into());
        }
        let m = self.store.monitor(&r.monitor).await?;
        if m.spec.performance.is_none() {
            return Err(MonitoringError::FailedPrecondition(format!(
                "monitor {:?} does not measure performance: update it with a performance spec first",
                r.monitor
            ))
            .into());
        }
        let mut labels = Vec::with_capacity(r.labels.len());
        for (i, l) in r.labels.into_iter().enumerate() {
            if l.request_id.is_empty() || l.row < 0 || l.value.is_empty() {
                return Err(invalid(format!(
                    "label {i}: a label needs the prediction's request_id, a row >= 0 and a value"
                ))
                .into());
            }
            labels.push((l.request_id, l.row, l.value));
        }
        let stored = labels.len() as i64;
        let (matched, windows) = self.store.put_labels(&m.name, &labels).await?;
        for w in &windows {
            self.tracker.labelled(&m, w).await?;
        }
        Ok(Response::new(pb::PushLabelsResponse {
            stored,
            matched,
            windows_updated: windows.len() as i64,
        }))
    }

    async fn list_performance(
        &self,
        req: Request<pb::ListPerformanceRequest>,
    ) -> Answer<pb::ListPerformanceResponse> {
        let r = req.into_inner();
        let limit = match r.limit {
            0 => 100,
            n if (1..=1000).contains(&n) => i64::from(n),
            n => {
                return Err(invalid(format!("limit {n} is not between 1 and 1000")).into());
            }
        };
        let windows = self.store.performance(&r.monitor, limit).await?;
        Ok(Response::new(pb::ListPerformanceResponse {
            windows: windows.iter().map(requests::performance_to_pb).collect(),
        }))
    }

    async fn capture_reference(
        &self,
        req: Request<pb::CaptureReferenceRequest>,
    ) -> Answer<pb::Monitor> {
        let r = req.into_inner();
        check_name(&r.monitor)?;
        let m = self.store.monitor(&r.monitor).await?;
        let Some(log) = &m.spec.prediction_log else {
            return Err(MonitoringError::FailedPrecondition(format!(
                "monitor {:?} does not follow the prediction log: set its prediction_log (UpdateMonitor) first, or upload a reference",
                r.monitor
            ))
            .into());
        };
        let rows = match r.rows {
            0 if log.reference_rows == 0 => return Err(invalid(
                "say how many rows to take: rows, or the monitor's prediction_log.reference_rows",
            )
            .into()),
            0 => log.reference_rows,
            n => n,
        };
        crate::windows::check_reference_rows(rows, "rows", false).map_err(invalid)?;
        let m = self.store.start_capture(&r.monitor, rows).await?;
        Ok(Response::new(monitor_to_pb(&m)))
    }

    async fn list_reports(
        &self,
        req: Request<pb::ListReportsRequest>,
    ) -> Answer<pb::ListReportsResponse> {
        let r = req.into_inner();
        let limit = match r.limit {
            0 => 100,
            n if (1..=1000).contains(&n) => i64::from(n),
            n => {
                return Err(invalid(format!("limit {n} is not between 1 and 1000")).into());
            }
        };
        let reports = self.store.reports(&r.monitor, r.since_ms, limit).await?;
        Ok(Response::new(pb::ListReportsResponse {
            reports: reports.iter().map(|r| report_to_pb(r, false)).collect(),
        }))
    }
}

impl std::fmt::Debug for MonitoringApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitoringApi").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod roles_tests {
    #[test]
    fn every_rpc_has_a_declared_role() {
        mlops_runtime::auth::assert_declared(
            mlops_proto::FILE_DESCRIPTOR_SET,
            mlops_proto::monitoring::v1::monitoring_service_server::SERVICE_NAME,
            super::ROLES,
        );
    }
}
