//! How many requests each operation of a memory makes on S3, counted on the wire by a proxy in
//! front of the S3 test server (moto): what S3 bills. Prints the table that `docs/scale.md`
//! shows; run it with
//!
//! ```text
//! CI=true cargo test -p cachette-s3 --test requests -- --nocapture
//! ```

mod support;

use std::collections::BTreeMap;

use cachette_core::plugin::DynBackend;
use cachette_core::{Memory, SizeLimits};
use cachette_s3::S3Config;
use support::proxy::{Proxy, Seen, counts};

/// What a request was for, from its path.
fn target(seen: &Seen) -> &'static str {
    let path = seen.path.as_str();
    if path.contains(".cachette-access/log") {
        "access log"
    } else if path.ends_with(".claim") {
        "claim"
    } else if path.ends_with("func_code") {
        "identity"
    } else if seen.kind == "LIST" || seen.kind == "DELETE batch" {
        "listing"
    } else {
        "entry"
    }
}

fn describe(seen: &[Seen]) -> String {
    let mut by: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for s in seen {
        *by.entry((s.kind, target(s))).or_insert(0) += 1;
    }
    by.iter()
        .map(|((kind, what), n)| format!("{n} {kind} ({what})"))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Table(Vec<(String, usize, String)>);

impl Table {
    fn row(&mut self, operation: &str, seen: &[Seen]) -> BTreeMap<&'static str, u64> {
        self.0
            .push((operation.to_owned(), seen.len(), describe(seen)));
        counts(seen)
    }

    fn print(&self) {
        println!("\n| operation | requests | which |\n| --- | ---: | --- |");
        for (op, n, which) in &self.0 {
            println!("| {op} | {n} | {which} |");
        }
        println!();
    }
}

fn open(config: &S3Config, compute_once: bool) -> (Memory, DynBackend) {
    let backend: DynBackend = std::sync::Arc::new(config.build_backend().unwrap());
    let memory = Memory::builder()
        .backend(backend.clone())
        .compute_once(compute_once)
        .claims(compute_once)
        .build()
        .unwrap();
    (memory, backend)
}

#[test]
fn requests_per_operation() {
    let Some(server) = support::server() else {
        return;
    };
    let proxy = Proxy::start(&server.endpoint);
    let config = server.config_via(&proxy.endpoint(), "s3-requests");
    let mut table = Table(Vec::new());

    let (memory, _) = open(&config, true);
    let f = memory.cache(|x: u64| x * 2).name("requests.f");
    proxy.take();
    f.eval(1);
    let seen = proxy.take();
    table.row("first call of a function in a process (a miss)", &seen);
    f.eval(2);
    let seen = proxy.take();
    let miss = table.row("miss, compute-once with claims", &seen);
    f.eval(2);
    let seen = proxy.take();
    let hit = table.row("hit", &seen);
    assert_eq!(
        hit,
        BTreeMap::from([("GET", 1)]),
        "a hit is one GET: {seen:?}"
    );

    let (fresh, _) = open(&config, true);
    let g = fresh.cache(|x: u64| x * 2).name("requests.f");
    proxy.take();
    g.eval(2);
    let seen = proxy.take();
    table.row("hit, first call of the function in a process", &seen);

    let (no_once, _) = open(&config, false);
    let h = no_once.cache(|x: u64| x * 2).name("requests.f");
    h.eval(1);
    proxy.take();
    h.eval(3);
    let seen = proxy.take();
    let miss_plain = table.row("miss, compute-once off", &seen);

    f.call_and_shelve(2);
    let seen = proxy.take();
    table.row("call_and_shelve, stored", &seen);
    f.call_and_shelve(4);
    let seen = proxy.take();
    table.row("call_and_shelve, not stored", &seen);
    assert!(f.check_call_in_cache(&2));
    let seen = proxy.take();
    table.row("check_call_in_cache, stored", &seen);
    assert!(!f.check_call_in_cache(&5));
    let seen = proxy.take();
    table.row("check_call_in_cache, not stored", &seen);

    memory.housekeeping().unwrap();
    let seen = proxy.take();
    table.row("housekeeping", &seen);
    memory
        .reduce_size(&SizeLimits::default().items_limit(1000))
        .unwrap();
    let seen = proxy.take();
    table.row("reduce_size, nothing to delete", &seen);
    memory.clear().unwrap();
    let seen = proxy.take();
    table.row("clear", &seen);

    table.print();
    println!("miss: {miss:?}, miss without compute-once: {miss_plain:?}");
}
