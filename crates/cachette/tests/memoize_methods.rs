//! `#[memoize]` on methods and associated functions, and `key = ..`.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use cachette::{Memory, memoize};
use serde::{Deserialize, Serialize};

fn memory(test: &str) -> Memory {
    Memory::from_url(&format!(
        "memory://memoize-methods-{test}-{}",
        std::process::id()
    ))
    .unwrap()
}

static MODELS: LazyLock<Memory> = LazyLock::new(|| memory("models"));
static PREDICT_RUNS: AtomicUsize = AtomicUsize::new(0);
static SCALED_RUNS: AtomicUsize = AtomicUsize::new(0);
static CONSUMED_RUNS: AtomicUsize = AtomicUsize::new(0);
static COUNTED_RUNS: AtomicUsize = AtomicUsize::new(0);

/// A model: its predictions depend on every field, so `self` is hashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Model {
    scale: u64,
    offset: u64,
}

impl Model {
    /// `&self`: hashed with the arguments.
    #[memoize(memory = MODELS)]
    fn predict(&self, x: u64) -> u64 {
        PREDICT_RUNS.fetch_add(1, Ordering::SeqCst);
        self.scale * x + self.offset
    }

    /// An associated function naming `Self`: memoized as `Model::with_scale`.
    #[memoize(memory = MODELS)]
    fn with_scale(scale: u64) -> Self {
        SCALED_RUNS.fetch_add(1, Ordering::SeqCst);
        Model { scale, offset: 0 }
    }

    /// `self` by value, returning `Self`.
    #[memoize(memory = MODELS)]
    pub fn shifted(self, by: u64) -> Self {
        CONSUMED_RUNS.fetch_add(1, Ordering::SeqCst);
        Model {
            offset: self.offset + by,
            ..self
        }
    }
}

#[test]
fn methods_hash_self_with_their_arguments() {
    let a = Model {
        scale: 2,
        offset: 1,
    };
    let b = a.clone();
    assert_eq!(a.predict(3), 7);
    assert_eq!(b.predict(3), 7);
    assert_eq!(PREDICT_RUNS.load(Ordering::SeqCst), 1, "equal selves share");
    let c = Model {
        scale: 2,
        offset: 5,
    };
    assert_eq!(c.predict(3), 11);
    assert_eq!(
        PREDICT_RUNS.load(Ordering::SeqCst),
        2,
        "another self computes"
    );

    // The handle: associated functions named after the method.
    assert!(a.predict_check_call_in_cache(&3));
    assert!(!a.predict_check_call_in_cache(&4));
    assert!(Model::predict_memorized().check_call_in_cache(&(&a, 3u64)));
    let (value, meta) = a.predict_call(3);
    assert_eq!(value, 7);
    assert_eq!(PREDICT_RUNS.load(Ordering::SeqCst), 3, "call always runs");
    assert_eq!(
        meta.input_args,
        [
            (
                "self".to_owned(),
                "Model { scale: 2, offset: 1 }".to_owned()
            ),
            ("x".to_owned(), "3".to_owned())
        ]
    );
    let shelved = c.predict_call_and_shelve(10);
    assert_eq!(shelved.get().unwrap(), 25);
    assert!(c.predict_check_call_in_cache(&10));
    Model::predict_clear().unwrap();
    assert!(!a.predict_check_call_in_cache(&3));
    assert!(!c.predict_check_call_in_cache(&10));
}

#[test]
fn a_methods_identity_is_its_type_and_name() {
    let id = Model::predict_memorized().id();
    assert_eq!(id.name(), "memoize_methods::Model::predict");
    assert_eq!(
        Model::with_scale_memorized().id().name(),
        "memoize_methods::Model::with_scale"
    );
    assert_ne!(id.folder(), Model::shifted_memorized().id().folder());
}

#[test]
fn associated_functions_and_self_by_value() {
    assert_eq!(Model::with_scale(4), Model::with_scale(4));
    assert_eq!(SCALED_RUNS.load(Ordering::SeqCst), 1);
    assert!(Model::with_scale_check_call_in_cache(&4));

    let model = Model::with_scale(4);
    let shifted = model.clone().shifted(3);
    assert_eq!(shifted.offset, 3);
    assert_eq!(model.clone().shifted(3), shifted);
    assert_eq!(CONSUMED_RUNS.load(Ordering::SeqCst), 1);
    assert!(model.shifted_check_call_in_cache(&3));
    let (again, _) = model.shifted_call(3);
    assert_eq!(again, shifted);
    assert_eq!(CONSUMED_RUNS.load(Ordering::SeqCst), 2);
}

/// Not `Serialize`: its methods leave `self` out of the hash.
struct Counter {
    calls: u64,
    factor: u64,
}

impl Counter {
    /// `&mut self`, ignored: calls share results whatever `self` holds.
    #[memoize(memory = MODELS, ignore = [self])]
    fn counted(&mut self, x: u64) -> u64 {
        COUNTED_RUNS.fetch_add(1, Ordering::SeqCst);
        self.calls += 1;
        x * 10
    }

    /// `key` reads `self`: only the factor counts.
    #[memoize(memory = MODELS, key = (self.factor, x))]
    fn times(&self, x: u64) -> u64 {
        self.factor * x
    }
}

#[test]
fn ignored_receivers_and_keys_over_self() {
    let mut a = Counter {
        calls: 0,
        factor: 2,
    };
    let mut b = Counter {
        calls: 7,
        factor: 3,
    };
    assert_eq!(a.counted(1), 10);
    assert_eq!(b.counted(1), 10);
    assert_eq!(COUNTED_RUNS.load(Ordering::SeqCst), 1, "self is not hashed");
    assert_eq!(a.calls + b.calls, 8, "a hit does not run the body");
    assert!(b.counted_check_call_in_cache(&1));
    assert!(Counter::counted_memorized().check_call_in_cache(&(1u64,)));

    assert_eq!(a.times(5), 10);
    assert_eq!(b.times(5), 15);
    let c = Counter {
        calls: 100,
        factor: 2,
    };
    assert!(c.times_check_call_in_cache(&5), "same factor and x");
    assert!(!c.times_check_call_in_cache(&6));
    let (_, meta) = c.times_call(5);
    assert_eq!(
        meta.input_args,
        [
            ("self.factor".to_owned(), "2".to_owned()),
            ("x".to_owned(), "5".to_owned())
        ]
    );
}

#[derive(Serialize)]
struct User {
    id: u64,
    name: String,
}

static KEYS: LazyLock<Memory> = LazyLock::new(|| memory("keys"));
static GREET_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Only the user's id and the day are hashed: a renamed user keeps the greeting.
#[memoize(memory = KEYS, key = (user.id, day.clone()))]
fn greeting(user: &User, day: String, loud: bool) -> String {
    GREET_RUNS.fetch_add(1, Ordering::SeqCst);
    let text = format!("hello {} on {day}", user.name);
    if loud { text.to_uppercase() } else { text }
}

/// A key that is not a tuple: one value, named after its expression.
#[memoize(memory = KEYS, key = text.len())]
fn length_class(text: &str) -> String {
    if text.len() > 3 { "long" } else { "short" }.to_owned()
}

#[test]
fn keys_are_hashed_instead_of_the_arguments() {
    let ann = User {
        id: 1,
        name: "Ann".into(),
    };
    let renamed = User {
        id: 1,
        name: "Anna".into(),
    };
    assert_eq!(
        greeting(&ann, "monday".into(), false),
        "hello Ann on monday"
    );
    assert_eq!(
        greeting(&renamed, "monday".into(), true),
        "hello Ann on monday",
        "the key is (id, day): name and loud are not part of it"
    );
    assert_eq!(GREET_RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(
        greeting(&ann, "tuesday".into(), false),
        "hello Ann on tuesday"
    );
    assert_eq!(GREET_RUNS.load(Ordering::SeqCst), 2);

    // The handle hashes the same key; the metadata shows it.
    assert!(greeting::check_call_in_cache(
        &&renamed,
        &"tuesday".into(),
        &true
    ));
    assert!(greeting::memorized().check_call_in_cache(&(1u64, "tuesday")));
    let (_, meta) = greeting::call(&ann, "friday".into(), false);
    assert_eq!(
        meta.input_args,
        [
            ("user.id".to_owned(), "1".to_owned()),
            ("day.clone()".to_owned(), "\"friday\"".to_owned())
        ]
    );

    assert_eq!(length_class("abcd"), "long");
    assert!(length_class::check_call_in_cache(&"wxyz"));
    let (_, meta) = length_class::call("ab");
    assert_eq!(meta.input_args, [("text.len()".to_owned(), "2".to_owned())]);
}

#[test]
fn methods_in_function_bodies_have_the_function_in_their_path() {
    #[derive(Serialize)]
    struct Local(u32);

    impl Local {
        #[memoize(memory = MODELS)]
        fn double(&self) -> u32 {
            self.0 * 2
        }
    }

    assert_eq!(Local(4).double(), 8);
    assert!(Local(4).double_check_call_in_cache());
    assert_eq!(
        Local::double_memorized().id().name(),
        "memoize_methods::methods_in_function_bodies_have_the_function_in_their_path::Local::double"
    );
}

#[test]
fn results_of_methods_store_only_ok() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[derive(Serialize)]
    struct Parser {
        radix: u32,
    }

    impl Parser {
        #[memoize(memory = MODELS)]
        fn parse(&self, text: &str) -> Result<u32, String> {
            RUNS.fetch_add(1, Ordering::SeqCst);
            u32::from_str_radix(text, self.radix).map_err(|e| e.to_string())
        }
    }

    let hex = Parser { radix: 16 };
    assert_eq!(hex.parse("ff"), Ok(255));
    assert_eq!(hex.parse("ff"), Ok(255));
    assert!(hex.parse("zz").is_err());
    assert!(hex.parse("zz").is_err());
    assert_eq!(RUNS.load(Ordering::SeqCst), 3, "Err is not stored");
    assert_eq!(Parser { radix: 10 }.parse("ff").ok(), None);
    let Ok((value, _)) = hex.parse_call("10") else {
        panic!("10 parses");
    };
    assert_eq!(value, 16);
}

static ASYNC: LazyLock<Memory> = LazyLock::new(|| memory("async"));
static FETCH_RUNS: AtomicUsize = AtomicUsize::new(0);

#[derive(Serialize)]
struct Client {
    base: String,
}

impl Client {
    #[memoize(memory = ASYNC)]
    async fn fetch(&self, path: String) -> usize {
        FETCH_RUNS.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        self.base.len() + path.len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_methods() {
    let client = Client {
        base: "https://example.org/".into(),
    };
    assert_eq!(client.fetch("a".into()).await, 21);
    assert_eq!(client.fetch("a".into()).await, 21);
    assert_eq!(FETCH_RUNS.load(Ordering::SeqCst), 1);
    assert!(client.fetch_check_call_in_cache(&"a".into()).await);

    // The memoized future is `Send`: it can be spawned.
    let spawned = tokio::spawn(async move { client.fetch("b".into()).await });
    assert_eq!(spawned.await.unwrap(), 21);
    assert_eq!(FETCH_RUNS.load(Ordering::SeqCst), 2);
    Client::fetch_clear().await.unwrap();
}

#[test]
fn boxed_receivers() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[derive(Serialize)]
    struct Tree {
        leaves: Vec<u32>,
    }

    impl Tree {
        #[memoize(memory = MODELS)]
        #[allow(clippy::boxed_local)] // the receiver under test
        fn total(self: Box<Self>, extra: u32) -> u32 {
            RUNS.fetch_add(1, Ordering::SeqCst);
            self.leaves.iter().sum::<u32>() + extra
        }
    }

    let tree = || Box::new(Tree { leaves: vec![1, 2] });
    assert_eq!(tree().total(3), 6);
    assert_eq!(tree().total(3), 6);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
    assert!(
        tree().total_check_call_in_cache(&3),
        "a box hashes as its contents"
    );
}
