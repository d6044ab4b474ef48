//! Connections: one auto-reconnecting multiplexed connection to a single server, or a cluster
//! connection, both owned by the core's `cachette-io` runtime.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use tokio::runtime::Handle;
use tokio::sync::OnceCell;

use cachette_core::plugin::BackendError;

use crate::config::{RedisConfig, invalid};
use crate::location::normalize;
use crate::retry::{AsValues, Backoff, busy_result};

/// After a failed attempt to reach a cluster, later operations fail at once for this long
/// instead of queueing behind another attempt.
const CLUSTER_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Opens connections lazily and hands out cheap clones of them.
pub(crate) struct Connector {
    kind: ConnectorKind,
    /// How long refusals for now are retried (`retry_busy_ms`, see [`crate::retry`]).
    busy: Duration,
}

enum ConnectorKind {
    /// A single server: the manager reconnects by itself after a failure.
    Single(ConnectionManager),
    /// A Redis Cluster: connected on first use, then the connection follows the topology.
    Cluster(Box<ClusterConnector>),
}

/// The lazily opened connection to a cluster.
pub(crate) struct ClusterConnector {
    client: redis::cluster::ClusterClient,
    conn: OnceCell<ClusterConnection>,
    /// Bound on opening the connection (all nodes, slot map).
    timeout: Duration,
    /// The last failure to connect, to fail fast for a while after it.
    failed: Mutex<Option<(Instant, RedisError)>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            ConnectorKind::Single(_) => f.write_str("Connector::Single"),
            ConnectorKind::Cluster(cluster) => f
                .debug_struct("Connector::Cluster")
                .field("connected", &cluster.conn.initialized())
                .finish(),
        }
    }
}

impl Connector {
    /// Prepares the connection of a validated configuration on the `cachette-io` runtime, so
    /// that the tasks driving it live there. Nothing is sent yet.
    pub(crate) fn new(config: &RedisConfig, io: &Handle) -> Result<Self, BackendError> {
        if config.urls.iter().any(|u| u.starts_with("rediss:")) {
            ensure_crypto_provider();
        }
        let _in_io = io.enter();
        let connect = config.connection_timeout();
        let respond = config.response_timeout();
        let busy = config.retry_busy();
        let kind = if config.cluster {
            let urls: Vec<String> = config.urls.iter().map(|u| normalize(u)).collect();
            let client = ClusterClientBuilder::new(urls)
                .connection_timeout(connect)
                .response_timeout(respond)
                .retries(3)
                .min_retry_wait(20)
                .max_retry_wait(500)
                .build()
                .map_err(|e| invalid("cannot set up the Redis Cluster client").with_source(e))?;
            ConnectorKind::Cluster(Box::new(ClusterConnector {
                client,
                conn: OnceCell::new(),
                timeout: connect + respond,
                failed: Mutex::new(None),
            }))
        } else {
            let client = redis::Client::open(normalize(&config.urls[0]).as_str())
                .map_err(|e| invalid("cannot set up the Redis client").with_source(e))?;
            let manager_config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(connect))
                .set_response_timeout(Some(respond))
                // One attempt per operation: a dead server fails an operation within the
                // connection timeout, and the next operation tries again.
                .set_number_of_retries(0);
            let manager = ConnectionManager::new_lazy_with_config(client, manager_config)
                .map_err(|e| invalid("cannot set up the Redis connection").with_source(e))?;
            ConnectorKind::Single(manager)
        };
        Ok(Connector { kind, busy })
    }

    /// A connection. Must run on the `cachette-io` runtime.
    pub(crate) async fn conn(&self) -> RedisResult<Conn> {
        let link = self.link().await?;
        Ok(Conn {
            link,
            busy: self.busy,
        })
    }

    async fn link(&self) -> RedisResult<Link> {
        match &self.kind {
            ConnectorKind::Single(manager) => Ok(Link::Single(manager.clone())),
            ConnectorKind::Cluster(cluster) => {
                let ClusterConnector {
                    client,
                    conn,
                    timeout,
                    failed,
                } = &**cluster;
                if let Some(c) = conn.get() {
                    return Ok(Link::Cluster(c.clone()));
                }
                if let Some((at, err)) = &*failed.lock().unwrap_or_else(|e| e.into_inner())
                    && at.elapsed() < CLUSTER_RETRY_AFTER
                {
                    return Err(err.clone());
                }
                let connected = conn
                    .get_or_try_init(|| async {
                        match tokio::time::timeout(*timeout, client.get_async_connection()).await {
                            Ok(result) => result,
                            Err(_) => Err(RedisError::from(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "connecting to the Redis Cluster timed out",
                            ))),
                        }
                    })
                    .await;
                match connected {
                    Ok(c) => Ok(Link::Cluster(c.clone())),
                    Err(err) => {
                        *failed.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some((Instant::now(), err.clone()));
                        Err(err)
                    }
                }
            }
        }
    }
}

/// Installs rustls's ring provider as the process default when none is, so that building a TLS
/// configuration cannot panic for want of one.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: a provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A connection to a single server or to a cluster; clones share it. Every command sent
/// through it is retried while the server refuses it for now (see [`crate::retry`]).
#[derive(Clone)]
pub(crate) struct Conn {
    link: Link,
    busy: Duration,
}

#[derive(Clone)]
enum Link {
    /// A single server.
    Single(ConnectionManager),
    /// A cluster: commands are routed by the slot of their first key.
    Cluster(ClusterConnection),
}

/// After an attempt: the result to return, or `None` (after the wait) to try again because the
/// server refused the command for now and the budget is not spent.
async fn settle<T: AsValues>(
    backoff: &mut Backoff,
    result: RedisResult<T>,
    cluster: bool,
) -> Option<RedisResult<T>> {
    if !busy_result(&result, cluster) {
        backoff.report(false);
        return Some(result);
    }
    match backoff.wait() {
        Some(wait) => {
            tokio::time::sleep(wait).await;
            None
        }
        None => {
            backoff.report(true);
            Some(result)
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let cluster = self.is_cluster();
            let mut backoff = Backoff::new(self.busy);
            loop {
                let result = match &mut self.link {
                    Link::Single(c) => c.req_packed_command(cmd).await,
                    Link::Cluster(c) => c.req_packed_command(cmd).await,
                };
                if let Some(result) = settle(&mut backoff, result, cluster).await {
                    return result;
                }
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let cluster = self.is_cluster();
            let mut backoff = Backoff::new(self.busy);
            loop {
                let result = match &mut self.link {
                    Link::Single(c) => c.req_packed_commands(pipeline, offset, count).await,
                    Link::Cluster(c) => c.req_packed_commands(pipeline, offset, count).await,
                };
                if let Some(result) = settle(&mut backoff, result, cluster).await {
                    return result;
                }
            }
        })
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Single(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// Whether this is a cluster connection.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.link, Link::Cluster(_))
    }

    /// Sends a command to the node a routing names (on a cluster; to the server otherwise),
    /// retrying refusals for now.
    async fn routed(&mut self, cmd: Cmd, routing: RoutingInfo) -> RedisResult<Value> {
        let cluster = self.is_cluster();
        let mut backoff = Backoff::new(self.busy);
        loop {
            let result = match &mut self.link {
                Link::Cluster(c) => c.route_command(cmd.clone(), routing.clone()).await,
                Link::Single(c) => c.req_packed_command(&cmd).await,
            };
            if let Some(result) = settle(&mut backoff, result, cluster).await {
                return result;
            }
        }
    }

    /// Where `SCAN` must run to see every key: the single server, or one slot of each master
    /// of the cluster (a command for that slot goes to that master).
    pub(crate) async fn scan_targets(&mut self) -> RedisResult<Vec<Option<u16>>> {
        if !self.is_cluster() {
            return Ok(vec![None]);
        }
        let slots = self
            .routed(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await?;
        let mut masters: BTreeMap<(String, i64), u16> = BTreeMap::new();
        let Value::Array(ranges) = slots else {
            return Err(bad_answer("CLUSTER SLOTS"));
        };
        for range in ranges {
            let Value::Array(fields) = range else {
                return Err(bad_answer("CLUSTER SLOTS"));
            };
            let (Some(Value::Int(start)), Some(Value::Array(master))) =
                (fields.first(), fields.get(2))
            else {
                return Err(bad_answer("CLUSTER SLOTS"));
            };
            let host = match master.first() {
                Some(Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
                Some(Value::SimpleString(h)) => h.clone(),
                _ => return Err(bad_answer("CLUSTER SLOTS")),
            };
            let Some(Value::Int(port)) = master.get(1) else {
                return Err(bad_answer("CLUSTER SLOTS"));
            };
            let start = u16::try_from(*start).map_err(|_| bad_answer("CLUSTER SLOTS"))?;
            let slot = masters.entry((host, *port)).or_insert(start);
            *slot = (*slot).min(start);
        }
        Ok(masters.into_values().map(Some).collect())
    }

    /// One page of `SCAN cursor MATCH pattern COUNT count` on a target of
    /// [`Conn::scan_targets`].
    pub(crate) async fn scan_page(
        &mut self,
        target: Option<u16>,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> RedisResult<(u64, Vec<Vec<u8>>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        let answer = match target {
            Some(slot) => {
                let route = Route::new(slot, SlotAddr::Master);
                self.routed(
                    cmd,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                )
                .await?
            }
            None => cmd.query_async::<Value>(self).await?,
        };
        Ok(redis::from_redis_value(answer)?)
    }

    /// Sends a pipeline, once, to the master of a cluster that serves `slot`, whatever the
    /// slots of its commands (all must be served by that master: the server answers `MOVED`
    /// to the others). The errors of its commands are kept as values, and refusals are not
    /// retried: the caller sends the commands that failed again on their own. Not for a
    /// single server.
    pub(crate) async fn pipeline_to_master(
        &mut self,
        slot: u16,
        pipe: &Pipeline,
    ) -> RedisResult<Vec<Value>> {
        match &mut self.link {
            Link::Cluster(c) => {
                let route = Route::new(slot, SlotAddr::Master);
                c.route_pipeline(
                    pipe.clone(),
                    0,
                    pipe.len(),
                    SingleNodeRoutingInfo::SpecificNode(route),
                )
                .await
            }
            Link::Single(c) => c.req_packed_commands(pipe, 0, pipe.len()).await,
        }
    }

    /// Sends a command to any node (the single server, or a random cluster node).
    pub(crate) async fn any_node(&mut self, cmd: Cmd) -> RedisResult<Value> {
        self.routed(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
            .await
    }
}

fn bad_answer(what: &'static str) -> RedisError {
    RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected answer",
        what.to_owned(),
    ))
}
