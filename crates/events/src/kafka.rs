//! The Kafka bus (rdkafka, librdkafka built from its vendored source).

use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::bus::{BusError, Delivery, EventBus, RawRecord, RawSubscription, Subscription};
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

    /// A consumer in group `group` that commits only what it is told to.
    fn group_consumer(&self, group: &str, topics: &[&str]) -> Result<StreamConsumer, BusError> {
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
        Ok(consumer)
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

    async fn publish_raw(&self, records: &[RawRecord]) -> Result<(), BusError> {
        let mut pending = Vec::with_capacity(records.len());
        for r in records {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (k, v) in &r.headers {
                headers = headers.insert(Header {
                    key: k.as_ref(),
                    value: Some(v.as_slice()),
                });
            }
            let mut record = FutureRecord::<[u8], [u8]>::to(&r.topic)
                .payload(&r.payload)
                .headers(headers);
            if let Some(key) = &r.key {
                record = record.key(key.as_slice());
            }
            if let Some(ts) = r.timestamp {
                record = record.timestamp(ts);
            }
            let fut = self
                .producer
                .send_result(record)
                .map_err(|(e, _)| BusError::Publish {
                    topic: r.topic.clone(),
                    message: e.to_string(),
                })?;
            pending.push((fut, &r.topic));
        }
        for (fut, topic) in pending {
            let message = match fut.await {
                Ok(Ok(_)) => continue,
                Ok(Err((e, _))) => e.to_string(),
                Err(_) => "the producer dropped the message".to_owned(),
            };
            return Err(BusError::Publish {
                topic: topic.clone(),
                message,
            });
        }
        Ok(())
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
        Ok(Box::new(KafkaSubscription {
            consumer: self.group_consumer(group, topics)?,
            label: group.to_owned(),
            commits: true,
        }))
    }

    async fn subscribe_broadcast(
        &self,
        name: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError> {
        // No group: every partition of the topics is assigned to this consumer,
        // starting at the partition's high watermark as read now, so the starting
        // point is exact (the events published after this call returns) instead of
        // wherever a group's `auto.offset.reset=latest` lands once it has joined.
        // The group id is unique and nothing is committed under it.
        let consumer: StreamConsumer = Self::base_config(&self.args)
            .set(
                "group.id",
                format!("{name}.broadcast.{}", uuid::Uuid::new_v4().simple()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()
            .map_err(|e| BusError::Broker(format!("cannot create the kafka consumer: {e}")))?;
        let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        let consumer = tokio::task::spawn_blocking(move || {
            let timeout = Duration::from_secs(10);
            let mut tpl = TopicPartitionList::new();
            for topic in &topics {
                // A topic created a moment ago may take a moment to show in metadata.
                let mut attempts = 0;
                let partitions = loop {
                    let metadata = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| {
                        BusError::Broker(format!("reading {topic}'s partitions failed: {e}"))
                    })?;
                    let partitions: Vec<i32> = metadata
                        .topics()
                        .iter()
                        .filter(|t| t.name() == topic && t.error().is_none())
                        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                        .collect();
                    attempts += 1;
                    if !partitions.is_empty() {
                        break partitions;
                    }
                    if attempts == 10 {
                        return Err(BusError::Broker(format!(
                            "topic {topic} does not exist: a broadcast subscription needs it created first"
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(500));
                };
                for p in partitions {
                    let (_, high) = consumer
                        .fetch_watermarks(topic, p, timeout)
                        .map_err(|e| BusError::Broker(format!("reading the end of {topic}/{p} failed: {e}")))?;
                    tpl.add_partition_offset(topic, p, Offset::Offset(high))
                        .map_err(|e| BusError::Broker(e.to_string()))?;
                }
            }
            consumer
                .assign(&tpl)
                .map_err(|e| BusError::Broker(format!("assigning partitions failed: {e}")))?;
            Ok(consumer)
        })
        .await
        .map_err(|e| BusError::Broker(e.to_string()))??;
        Ok(Box::new(KafkaSubscription {
            consumer,
            label: name.to_owned(),
            commits: false,
        }))
    }

    async fn subscribe_raw(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn RawSubscription>, BusError> {
        Ok(Box::new(KafkaRawSubscription {
            consumer: self.group_consumer(group, topics)?,
        }))
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

/// A received message as a [`RawRecord`].
fn raw_of(msg: &BorrowedMessage<'_>) -> RawRecord {
    RawRecord {
        topic: msg.topic().to_owned(),
        key: msg.key().map(<[u8]>::to_vec),
        payload: msg.payload().unwrap_or_default().to_vec(),
        headers: msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned().into(),
                            h.value.unwrap_or_default().to_vec(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        partition: msg.partition(),
        offset: msg.offset(),
        timestamp: msg.timestamp().to_millis(),
    }
}

fn commit_offset(
    consumer: &StreamConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<(), BusError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset + 1))
        .map_err(|e| BusError::Broker(e.to_string()))?;
    consumer
        .commit(&tpl, CommitMode::Async)
        .map_err(|e| BusError::Broker(format!("committing offset failed: {e}")))
}

/// A group member's or a broadcast subscriber's events.
struct KafkaSubscription {
    consumer: StreamConsumer,
    /// The group, or the broadcast subscriber's name (metrics).
    label: String,
    /// Whether offsets are committed (not for a broadcast).
    commits: bool,
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
            match raw_of(&msg).to_delivery() {
                Ok(d) => return Ok(d),
                // Not one of our events: skip it rather than block the partition forever.
                Err(error) => {
                    crate::metrics::count_malformed(msg.topic(), &self.label, msg.offset(), &error)
                }
            }
        }
    }

    async fn commit(&mut self, d: &Delivery) -> Result<(), BusError> {
        if !self.commits {
            return Ok(());
        }
        commit_offset(&self.consumer, &d.envelope.topic, d.partition, d.offset)
    }
}

/// A group member's raw messages.
struct KafkaRawSubscription {
    consumer: StreamConsumer,
}

#[async_trait]
impl RawSubscription for KafkaRawSubscription {
    async fn next(&mut self) -> Result<RawRecord, BusError> {
        let msg = self
            .consumer
            .recv()
            .await
            .map_err(|e| BusError::Broker(format!("receiving failed: {e}")))?;
        Ok(raw_of(&msg))
    }

    async fn commit(&mut self, r: &RawRecord) -> Result<(), BusError> {
        commit_offset(&self.consumer, &r.topic, r.partition, r.offset)
    }
}
