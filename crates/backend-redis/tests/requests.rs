//! What each operation of a memory costs in Redis commands and round trips, counted by proxies
//! on loopback in front of servers of the test's own (`common::proxy`): a single server, and a
//! Redis Cluster of three masters. Counted in the steady state (the function's identity
//! checked, the connections open). The tables are printed (`--nocapture`) and the counts are
//! those documented in `docs/backends/redis.md` ("Requests and scale"); they are asserted
//! exactly, so that a request added to an operation fails this test.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use cachette_core::Memory;
use common::proxy::Proxy;
use redis::cluster_routing::Slot;

/// One row: the operation, the commands it sent by name, and the round trips.
struct Row {
    op: &'static str,
    commands: BTreeMap<String, u64>,
    round_trips: u64,
}

impl Row {
    fn total(&self) -> u64 {
        self.commands.values().sum()
    }

    fn shown(&self) -> String {
        self.commands
            .iter()
            .map(|(name, n)| {
                if *n == 1 {
                    name.clone()
                } else {
                    format!("{n}× {name}")
                }
            })
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

/// The commands the proxies forwarded since the last call, and the round trips.
fn take_counts(proxies: &[Proxy]) -> (BTreeMap<String, u64>, u64) {
    let mut all = BTreeMap::new();
    let mut trips = 0;
    for proxy in proxies {
        let (counts, t) = proxy.take_counts();
        for (name, n) in counts {
            *all.entry(name).or_default() += n;
        }
        trips += t;
    }
    (all, trips)
}

/// Runs `op` and counts what it sent.
fn measure(proxies: &[Proxy], op: &'static str, run: impl FnOnce()) -> Row {
    take_counts(proxies);
    run();
    let (commands, round_trips) = take_counts(proxies);
    Row {
        op,
        commands,
        round_trips,
    }
}

fn memory(url: &str, compute_once: bool) -> Memory {
    cachette_redis::link();
    Memory::builder()
        .url(url)
        .compute_once(compute_once)
        .claims(compute_once)
        .build()
        .unwrap()
}

const HIT: &str = "hit";
const HIT_AGAIN: &str = "hit again within a second";
const MISS: &str = "miss, without compute-once";
const MISS_CLAIM: &str = "miss, compute-once (claim in the store)";
const HIT_CLAIM: &str = "hit, compute-once, within a second of its miss";
const SHELVE: &str = "call_and_shelve of a stored result";
const LOAD: &str = "load of a shelved result";
const CHECK: &str = "check_call_in_cache";
const LIST: &str = "entries of a function of 12";
const DELETE: &str = "delete_entry";
const LARGE: &str = "entries of a function of 1011";

/// The counts documented for every operation but listings: operation, commands, round trips.
/// The same on a single server and on a cluster (an item's keys share a slot).
/// A process records the access of an item at most once a second: a read of an item it read
/// (or wrote) less than a second ago sends its `GET` alone.
const EXPECTED: &[(&str, u64, u64)] = &[
    (HIT, 2, 1),
    (HIT_AGAIN, 1, 1),
    (MISS, 3, 2),
    (MISS_CLAIM, 6, 5),
    (HIT_CLAIM, 1, 1),
    (SHELVE, 1, 1),
    (LOAD, 2, 1),
    (CHECK, 1, 1),
    (DELETE, 1, 1),
];

/// Runs every operation through a memory at `url` (whose commands all go through `proxies`)
/// and returns the rows, and for each listing what `aside(folder)` said right after it (read
/// aside, not counted).
fn run(url: &str, proxies: &[Proxy], aside: &dyn Fn(&str) -> u64) -> (Vec<Row>, [u64; 2]) {
    let plain = memory(url, false);
    let claiming = memory(url, true);
    let f = plain.cache(|x: u64| x * 2).name("requests.f");
    let g = claiming.cache(|x: u64| x * 2).name("requests.g");
    // The steady state: the functions' identities are checked, the access tracking decided,
    // the connections (also those of synchronous callers) open.
    assert_eq!(f.eval(0), 0);
    assert_eq!(g.eval(0), 0);
    assert_eq!(f.eval(0), 0);
    let folder = f
        .call_and_shelve(0)
        .as_memorized()
        .expect("stored")
        .func()
        .to_owned();
    for x in 1..=10 {
        f.eval(x);
    }
    let shelved = f.call_and_shelve(4);
    plain.entries(Some(&folder)).unwrap();
    // The accesses recorded above no longer count: the next read of each records it.
    std::thread::sleep(std::time::Duration::from_millis(1100));

    let mut rows = vec![
        measure(proxies, HIT, || assert_eq!(f.eval(1), 2)),
        measure(proxies, HIT_AGAIN, || assert_eq!(f.eval(1), 2)),
        measure(proxies, MISS, || assert_eq!(f.eval(100), 200)),
        measure(proxies, MISS_CLAIM, || assert_eq!(g.eval(100), 200)),
        measure(proxies, HIT_CLAIM, || assert_eq!(g.eval(100), 200)),
        measure(proxies, SHELVE, || {
            assert!(f.call_and_shelve(2).as_memorized().is_some());
        }),
        measure(proxies, LOAD, || assert_eq!(shelved.get().unwrap(), 8)),
        measure(proxies, CHECK, || assert!(f.check_call_in_cache(&3))),
        measure(proxies, LIST, || {
            let entries = plain.entries(Some(&folder)).unwrap();
            assert_eq!(entries.len(), 12, "{entries:?}");
        }),
    ];
    let small = aside(&folder);
    let victim = plain.entries(Some(&folder)).unwrap()[0].args_id.clone();
    rows.push(measure(proxies, DELETE, || {
        plain.delete_entry(&folder, &victim).unwrap();
    }));
    for x in 1000..2000 {
        f.eval(x);
    }
    rows.push(measure(proxies, LARGE, || {
        assert_eq!(plain.entries(Some(&folder)).unwrap().len(), 1011);
    }));
    let large = aside(&folder);
    (rows, [small, large])
}

fn table(title: &str, rows: &[Row]) -> String {
    let mut table = format!(
        "{title}\n| operation | commands | round trips | what is sent |\n| --- | --- | --- | --- |\n"
    );
    for row in rows {
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} |",
            row.op,
            row.total(),
            row.round_trips,
            row.shown()
        );
    }
    table
}

fn row<'a>(rows: &'a [Row], op: &str) -> &'a Row {
    rows.iter().find(|r| r.op == op).expect(op)
}

#[track_caller]
fn check_fixed(rows: &[Row], table: &str) {
    for (op, commands, trips) in EXPECTED {
        let row = row(rows, op);
        assert_eq!(
            (row.total(), row.round_trips),
            (*commands, *trips),
            "{op}: {}\n{table}",
            row.shown()
        );
    }
}

#[test]
fn commands_per_operation_on_a_single_server() {
    // A server of its own: listings walk every key of the database.
    let Some(bin) =
        cachette_core::plugin::testkit::server_from_env("CACHETTE_TEST_REDIS_SERVER_BIN")
    else {
        return;
    };
    let server = common::Server::start(&bin, &[]);
    let proxies = [Proxy::start(([127, 0, 0, 1], server.port).into())];
    let (rows, _) = run(&proxies[0].url("/0"), &proxies, &|_| 0);
    let table = table("single server", &rows);
    println!("{table}");
    check_fixed(&rows, &table);
    // A listing: `SCAN` pages of 1000 keys, and the listing script on batches of 256 items.
    let list = row(&rows, LIST);
    assert_eq!(
        (list.total(), list.round_trips),
        (2, 2),
        "{}\n{table}",
        list.shown()
    );
    // 1011 entries, their records and the function's identity item: about 2030 keys, 2 to 4
    // pages (`COUNT` is a hint); 1012 items in batches of 256: 4 scripts.
    let large = row(&rows, LARGE);
    assert_eq!(large.commands.get("EVAL list"), Some(&4), "{table}");
    let pages = large.commands.get("SCAN").copied().unwrap_or(0);
    assert!((2..=4).contains(&pages), "{table}");
    assert_eq!(large.total(), 4 + pages, "{table}");
}

#[test]
fn commands_per_operation_on_a_cluster() {
    let Some(bin) =
        cachette_core::plugin::testkit::server_from_env("CACHETTE_TEST_REDIS_SERVER_BIN")
    else {
        return;
    };
    let cluster = common::ProxiedCluster::start(&bin, 3);
    // The slots that hold the items of the function (data keys: those that are not records).
    let slots = |folder: &str| {
        cluster
            .keys(&format!("*cachette/{folder}/*"))
            .into_iter()
            .filter(|k| !k.starts_with('{'))
            .map(Slot::for_key)
            .collect::<HashSet<_>>()
            .len() as u64
    };
    let (rows, [small, large_slots]) = run(&cluster.url(), &cluster.proxies, &slots);
    let table = table("Redis Cluster, 3 masters", &rows);
    println!("{table}");
    check_fixed(&rows, &table);
    // A listing: the masters (`CLUSTER SLOTS`), `SCAN` pages on each master, and the listing
    // script once per slot holding items (no slot gathers 256 of them here), sent in
    // pipelines of up to 256 items to each master.
    let list = row(&rows, LIST);
    let mut expected = BTreeMap::from([
        ("CLUSTER SLOTS".to_owned(), 1),
        ("SCAN".to_owned(), 3),
        ("EVAL list".to_owned(), small),
    ]);
    assert_eq!(list.commands, expected, "{table}");
    // 1011 entries, their records and the identity item on 3 masters: 1 or 2 pages each.
    let large = row(&rows, LARGE);
    let pages = large.commands.get("SCAN").copied().unwrap_or(0);
    assert!((3..=6).contains(&pages), "{table}");
    expected.insert("SCAN".to_owned(), pages);
    expected.insert("EVAL list".to_owned(), large_slots);
    assert_eq!(large.commands, expected, "{table}");
}
