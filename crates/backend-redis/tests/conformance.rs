//! The shared conformance suite, against a real Redis and a real Redis Cluster, with whole
//! values, with chunked values, and with stored access times.

mod common;

use cachette_core::plugin::testkit;
use cachette_redis::AccessTracking;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_server() {
    let Some(backend) = common::single("conf", |c| c) else {
        return;
    };
    testkit::run_all(common::dyn_backend(backend)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster() {
    let Some(backend) = common::cluster("conf", |c| c) else {
        return;
    };
    testkit::run_all(common::dyn_backend(backend)).await;
}

/// Every item above 100 KiB is chunked: the racing writers of `atomic_visibility` (256 KiB)
/// publish manifests while readers read chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_server_chunked() {
    let Some(backend) = common::single("conf-chunked", |c| c.with_chunk_size(100 * 1024)) else {
        return;
    };
    testkit::run_all(common::dyn_backend(backend)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_chunked() {
    let Some(backend) = common::cluster("conf-chunked", |c| c.with_chunk_size(100 * 1024)) else {
        return;
    };
    testkit::run_all(common::dyn_backend(backend)).await;
}

/// Access times kept in the records (what an LFU server gets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_server_stored_access() {
    let Some(backend) = common::single("conf-stored", |c| {
        c.with_access_tracking(AccessTracking::Stored)
    }) else {
        return;
    };
    testkit::run_all(common::dyn_backend(backend)).await;
}
