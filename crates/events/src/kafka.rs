//! The Kafka bus (rdkafka, librdkafka built from its vendored source).

use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::bus::{BusError, Delivery, EventBus, Subscription};
use crate::{BusArgs, Envelope};

/// The Kafka bus: one producer, consumers made per subscription.
pub struct KafkaBus {
    args: BusArgs,
    producer: FutureProducer,
}

impl KafkaBus {
    /// Creates the producer (connections are made lazily by librdkafka).
    pub fn new(args: &BusArgs) -> Result<Self, BusError> {
        let producer: FutureProducer = Self::base_config(args)
            .set(
                "message.timeout.ms",
                args.kafka_message_timeout_ms.to_string(),
            )
            // One request in flight per connection keeps retried sends in order.
            .set("max.in.flight.requests.per.connection", "1")
            .set("linger.ms", "2")
            .set("acks", "all")
            .create()
            .map_err(|e| BusError::Broker(format!("cannot create the kafka producer: {e}")))?;
        Ok(KafkaBus {
            args: args.clone(),
            producer,
        })
    }

    fn base_config(args: &BusArgs) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &args.kafka_brokers)
            .set("broker.address.family", "v4")
            .set("socket.keepalive.enable", "true");
        c
    }
}

#[async_trait]
impl EventBus for KafkaBus {
    async fn publish(&self, events: &[Envelope]) -> (usize, Result<(), BusError>) {
        // Enqueue everything first so the batch is pipelined, then await in order.
        let mut pending = Vec::with_capacity(events.len());
        for e in events {
            let mut headers = OwnedHeaders::new_with_capacity(9);
            for (k, v) in e.headers() {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            let record = FutureRecord::to(&e.topic)
                .key(&e.key)
                .payload(&e.payload)
                .headers(headers);
            match self.producer.send_result(record) {
                Ok(fut) => pending.push(fut),
                Err((err, _)) => {
                    return (
                        await_in_order(pending, events).await.0,
                        Err(BusError::Publish {
                            topic: e.topic.clone(),
                            message: err.to_string(),
                        }),
                    );
                }
            }
        }
        await_in_order(pending, events).await
    }

    async fn ensure_topics(&self, topics: &[&str]) -> Result<(), BusError> {
        let admin: AdminClient<DefaultClientContext> = Self::base_config(&self.args)
            .create()
            .map_err(|e| BusError::Broker(format!("cannot create the kafka admin client: {e}")))?;
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|t| NewTopic::new(t, self.args.kafka_partitions, TopicReplication::Fixed(1)))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(new.iter(), &opts)
            .await
            .map_err(|e| BusError::Broker(format!("creating topics failed: {e}")))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(BusError::Broker(format!(
                        "creating topic {topic} failed: {code}"
                    )))
                }
            }
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError> {
        let consumer: StreamConsumer = Self::base_config(&self.args)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                self.args.kafka_session_timeout_ms.to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (self.args.kafka_session_timeout_ms / 3)
                    .max(100)
                    .to_string(),
            )
            .create()
            .map_err(|e| BusError::Broker(format!("cannot create the kafka consumer: {e}")))?;
        consumer
            .subscribe(topics)
            .map_err(|e| BusError::Broker(format!("subscribing to {topics:?} failed: {e}")))?;
        Ok(Box::new(KafkaSubscription { consumer }))
    }

    async fn ping(&self) -> Result<(), BusError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(2))
                .map(|_| ())
        })
        .await
        .map_err(|e| BusError::Broker(e.to_string()))?
        .map_err(|e| BusError::Broker(format!("kafka unreachable: {e}")))
    }
}

async fn await_in_order(
    pending: Vec<rdkafka::producer::DeliveryFuture>,
    events: &[Envelope],
) -> (usize, Result<(), BusError>) {
    let mut delivered = 0;
    let mut first_err = None;
    for (i, fut) in pending.into_iter().enumerate() {
        let err = match fut.await {
            Ok(Ok(_)) => None,
            Ok(Err((e, _))) => Some(e.to_string()),
            Err(_) => Some("the producer dropped the message".to_owned()),
        };
        match err {
            None if first_err.is_none() => delivered += 1,
            None => {}
            Some(message) => {
                first_err.get_or_insert(BusError::Publish {
                    topic: events[i].topic.clone(),
                    message,
                });
            }
        }
    }
    match first_err {
        None => (delivered, Ok(())),
        Some(e) => (delivered, Err(e)),
    }
}

struct KafkaSubscription {
    consumer: StreamConsumer,
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        loop {
            let msg = self
                .consumer
                .recv()
                .await
                .map_err(|e| BusError::Broker(format!("receiving failed: {e}")))?;
            let topic = msg.topic().to_owned();
            let key = msg
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            let headers: Vec<(&str, &[u8])> = msg
                .headers()
                .map(|h| {
                    h.iter()
                        .filter_map(|h| h.value.map(|v| (h.key, v)))
                        .collect()
                })
                .unwrap_or_default();
            match Envelope::from_headers(&topic, &key, msg.payload().unwrap_or_default(), headers) {
                Ok(envelope) => {
                    return Ok(Delivery {
                        envelope,
                        partition: msg.partition(),
                        offset: msg.offset(),
                    })
                }
                // Not one of our events: skip it rather than block the partition forever.
                Err(message) => {
                    tracing::warn!(topic = %topic, offset = msg.offset(), error = %message, "skipping malformed event")
                }
            }
        }
    }

    async fn commit(&mut self, d: &Delivery) -> Result<(), BusError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&d.envelope.topic, d.partition, Offset::Offset(d.offset + 1))
            .map_err(|e| BusError::Broker(e.to_string()))?;
        self.consumer
            .commit(&tpl, CommitMode::Async)
            .map_err(|e| BusError::Broker(format!("committing offset failed: {e}")))
    }
}
