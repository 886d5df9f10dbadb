//! What Triton's ModelConfig and ModelStatistics answer for a loaded version (the REST
//! routes answer the same, as JSON).

use std::sync::atomic::Ordering;

use mlops_model::DataType;
use mlops_proto::triton as pb;

use crate::grpc::PLATFORM;
use crate::models::{dims, Loaded};

/// Triton's `DataType` enum value of an element type.
pub fn config_datatype(dtype: DataType) -> pb::DataType {
    match dtype {
        DataType::Bool => pb::DataType::TypeBool,
        DataType::U8 => pb::DataType::TypeUint8,
        DataType::U16 => pb::DataType::TypeUint16,
        DataType::U32 => pb::DataType::TypeUint32,
        DataType::U64 => pb::DataType::TypeUint64,
        DataType::I8 => pb::DataType::TypeInt8,
        DataType::I16 => pb::DataType::TypeInt16,
        DataType::I32 => pb::DataType::TypeInt32,
        DataType::I64 => pb::DataType::TypeInt64,
        DataType::F32 => pb::DataType::TypeFp32,
        DataType::F64 => pb::DataType::TypeFp64,
        DataType::String => pb::DataType::TypeString,
    }
}

/// The model's configuration as Triton describes one: with batching, `max_batch_size` and the
/// dimensions after the batch; without, `max_batch_size` 0 and every dimension.
pub fn model_config(loaded: &Loaded) -> pb::ModelConfig {
    let shape = |s: &mlops_model::IoSpec| {
        let d = dims(&s.shape);
        if loaded.batchable {
            d[1..].to_vec()
        } else {
            d
        }
    };
    let s = &loaded.settings;
    pb::ModelConfig {
        name: loaded.name.clone(),
        platform: PLATFORM.to_owned(),
        backend: "mlops".to_owned(),
        max_batch_size: if loaded.batchable {
            s.max_batch_size as i32
        } else {
            0
        },
        version_policy: Some(pb::ModelVersionPolicy {
            policy_choice: Some(pb::model_version_policy::PolicyChoice::Specific(
                pb::model_version_policy::Specific {
                    versions: vec![loaded.version],
                },
            )),
        }),
        input: loaded
            .model
            .inputs()
            .iter()
            .map(|i| pb::ModelInput {
                name: i.name.clone(),
                data_type: config_datatype(i.dtype) as i32,
                dims: shape(i),
                ..Default::default()
            })
            .collect(),
        output: loaded
            .model
            .outputs()
            .iter()
            .map(|o| pb::ModelOutput {
                name: o.name.clone(),
                data_type: config_datatype(o.dtype) as i32,
                dims: shape(o),
                ..Default::default()
            })
            .collect(),
        scheduling_choice: (s.dynamic_batching && loaded.batchable).then(|| {
            pb::model_config::SchedulingChoice::DynamicBatching(pb::ModelDynamicBatching {
                preferred_batch_size: s.preferred_batch_size.iter().map(|&p| p as i32).collect(),
                max_queue_delay_microseconds: s.max_queue_delay_us,
                default_queue_policy: Some(pb::ModelQueuePolicy {
                    max_queue_size: s.max_queue_size,
                    default_timeout_microseconds: s.default_timeout_us,
                    ..Default::default()
                }),
                ..Default::default()
            })
        }),
        ..Default::default()
    }
}

/// The statistics of a loaded version, as Triton reports them.
pub fn statistics(loaded: &Loaded) -> pb::ModelStatistics {
    let st = &loaded.stats;
    let d = |p: &(std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64)| {
        Some(pb::StatisticDuration {
            count: p.0.load(Ordering::Relaxed),
            ns: p.1.load(Ordering::Relaxed),
        })
    };
    let batches = st.batches.lock().unwrap_or_else(|p| p.into_inner()).clone();
    pb::ModelStatistics {
        name: loaded.name.clone(),
        version: loaded.version.to_string(),
        last_inference: st.last_inference_ms.load(Ordering::Relaxed),
        inference_count: st.inference_count.load(Ordering::Relaxed),
        execution_count: st.execution_count.load(Ordering::Relaxed),
        inference_stats: Some(pb::InferStatistics {
            success: d(&st.success),
            fail: d(&st.fail),
            queue: d(&st.queue),
            compute_input: Some(pb::StatisticDuration::default()),
            compute_infer: d(&st.compute),
            compute_output: Some(pb::StatisticDuration::default()),
            cache_hit: Some(pb::StatisticDuration::default()),
            cache_miss: Some(pb::StatisticDuration::default()),
        }),
        batch_stats: batches
            .into_iter()
            .map(|(size, (count, ns))| pb::InferBatchStatistics {
                batch_size: size,
                compute_input: Some(pb::StatisticDuration::default()),
                compute_infer: Some(pb::StatisticDuration { count, ns }),
                compute_output: Some(pb::StatisticDuration::default()),
            })
            .collect(),
        ..Default::default()
    }
}
