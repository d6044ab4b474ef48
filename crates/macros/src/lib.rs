//! The macros of Cachette: the `#[memoize]` attribute, for functions and methods, and
//! `cache!`, for closures.
//!
//! Use them through the `cachette` crate (`cachette::memoize`, `cachette::cache!`), which the
//! generated code refers to; see [`macro@memoize`] and [`cache!`].

#![forbid(unsafe_code)]

mod closure;
mod expand;
mod fingerprint;
mod options;
mod signature;

use proc_macro::TokenStream;

/// Memoizes a function: calls with arguments already seen load the stored result instead of
/// running the body, in this process or any other that shares the store. The function is still
/// called like a plain `fn`.
///
/// ```
/// use std::sync::LazyLock;
/// use cachette::{Memory, memoize};
///
/// static MEMORY: LazyLock<Memory> =
///     LazyLock::new(|| Memory::from_url("memory://memoize-doc-square").unwrap());
///
/// #[memoize(memory = MEMORY)]
/// fn square(x: u64) -> u64 {
///     println!("computing square({x})");
///     x * x
/// }
///
/// assert_eq!(square(4), 16); // runs the body
/// assert_eq!(square(4), 16); // loads the stored result
/// assert!(square::check_call_in_cache(&4));
/// assert!(!square::check_call_in_cache(&5));
/// println!("{}", square::explain(&5)); // why square(5) would miss: 4 is stored, not 5
/// assert!(square::explain(&4).hit);
///
/// let (value, metadata) = square::call(4); // runs the body whatever is stored
/// assert_eq!(value, 16);
/// assert_eq!(metadata.input_args, [("x".to_owned(), "4".to_owned())]);
///
/// square::clear().unwrap();
/// assert!(!square::check_call_in_cache(&4));
/// ```
///
/// # Options
///
/// `#[memoize(option = value, ...)]`, all optional:
///
/// | option | value | default |
/// | --- | --- | --- |
/// | `memory` | an expression whose value implements `AsMemory`: a `Memory`, a reference, an `Arc`, a `static` `LazyLock<Memory>` or `OnceLock<Memory>`, or a call returning one of these. It is evaluated once, on the first call. | `cachette::global()` |
/// | `ignore` | `[name, ...]`: arguments left out of the hash, by name (identifiers or strings; `self` for the receiver of a method). Calls that differ only in them share a result; they need not be `Serialize`. | none |
/// | `key` | an expression hashed instead of the arguments, evaluated with each argument (and `self`) in scope as a reference: `key = (user.id, day.clone())`. It must give an owned `Serialize` value; the arguments need not be `Serialize`. Not with `ignore`. | the arguments |
/// | `version` | a string (`impl Into<String>`), added to the function's identity: changing it discards the stored results. | none |
/// | `validate` | anything `Into<Validation>`: a closure `Fn(&Metadata) -> bool` or `cachette::expires_after(..)`. A stored result it rejects is computed again. | none |
/// | `verbose` | the function's verbosity (`u8`), instead of the memory's. | the memory's |
/// | `mmap_mode` | how the arrays of outputs are loaded: a joblib name (`"r"`, `"c"`, `"r+"`, `"w+"`, `"none"`), checked at compile time, or an expression of type `MmapMode`. | the memory's |
/// | `name` | the function's name in the store (`impl Into<String>`), instead of its path. | its path |
/// | `result` | `result` or `result = true/false`: whether the return type is a `Result` whose `Ok` alone is stored (see below). | from the return type |
/// | `compute_once` | a `bool` expression: whether concurrent misses of one key compute it once, the other callers waiting (see `MemoryBuilder::compute_once`). | the memory's |
/// | `strict` | `strict` or `strict = true/false`: faults of the store (unreadable, unwritable, a damaged entry) are returned as the function's error instead of warning and computing. Needs a `Result` return type whose error type implements `From<cachette::Error>` (`anyhow::Error`, `Box<dyn Error + Send + Sync>`, ...). | `false` |
/// | `memo` | `memo` or `memo = true/false`: keeps outputs decoded in the memory's in-process memo (`MemoryBuilder::memo_size`), so that a repeated hit is a lookup and a clone. Needs an output type that is `Clone + Send + Sync + 'static`. | `false` |
///
/// An unknown option is a compile error.
///
/// # Arguments and output
///
/// The arguments that are not ignored are hashed as a tuple, so they need `Serialize` (and
/// number at most 16, serde's largest tuple: ignore some, or use `key`); the body gets every
/// argument by value, as before. The output is stored, so it needs `Serialize`
/// and `DeserializeOwned` (and `Clone` for `Shelved::get` on a result that could not be
/// stored).
///
/// **`Result`s.** When the return type's last path segment is `Result` with one or two generic
/// arguments (`Result<T, E>`, `std::io::Result<T>`, `anyhow::Result<T>`), only `Ok(T)` is
/// stored: `Err` is returned as is, and the next call runs the body again. `result = false`
/// stores the whole value, `Err` included; `result` treats another alias whose first generic
/// argument is the `Ok` type as a `Result`.
///
/// A panic in the body propagates and nothing is stored.
///
/// # Generated items
///
/// Next to the function (here `square(x: u64) -> u64`), with the function's visibility, a type
/// of the same name (`enum square {}`, which lives in the type namespace and so does not clash
/// with the function) holds the handle:
///
/// | item | what it does |
/// | --- | --- |
/// | `square::memorized() -> &'static MemorizedFunc<u64>` | the memoized function, built on first use; its argument is the tuple of the non-ignored arguments: `square::memorized().check_call_in_cache(&(4,))` |
/// | `square::call(x: u64) -> (u64, Metadata)` | runs the body whatever is stored, stores and returns the output with its metadata (joblib's `func.call`) |
/// | `square::call_and_shelve(x: u64) -> Shelved<u64>` | a reference to the stored result, computed first if needed |
/// | `square::check_call_in_cache(x: &u64) -> bool` | whether a call would load a stored result; nothing runs, no output is loaded |
/// | `square::explain(x: &u64) -> Explanation` | why a call would load a stored result or not (no stored result, the nearest entry and the arguments that differ, other code, expiry, ...); reads metadata only and writes nothing |
/// | `square::clear() -> Result<(), Error>` | deletes every stored result of the function |
///
/// For a `Result` return type `R<T, ..>`, `call` returns `R<(T, Metadata), ..>` and
/// `call_and_shelve` returns `R<Shelved<T>, ..>`: `Err` is returned and nothing is stored.
///
/// A method's handle is made of associated functions instead (see [Methods](#methods)).
///
/// # Identity
///
/// A function's results live under its path (`my_crate::module::square`); a function declared
/// inside another function's body has that function in its path
/// (`my_crate::module::outer::square`), so it never shares results with a module-level
/// function of the same name. `name = ".."` replaces the path.
///
/// The macro also hashes the function's tokens (its signature and body; not its attributes,
/// and neither whitespace nor comments): when the body changes, the first call discards the
/// results stored by the old body, with a warning that says so. `version = ".."` adds an
/// explicit version, for changes the tokens do not show (a function that the body calls, a
/// file that it reads).
///
/// # Async functions
///
/// An `async fn` stays an `async fn`. It reaches the store without blocking the runtime: network
/// backends are awaited, and local ones run on the runtime's blocking pool. Its handle has
/// `memorized()`, and `call(..)`, `call_and_shelve(..)`, `check_call_in_cache(..)`,
/// `explain(..)` and `clear()` as `async fn`s.
///
/// ```no_run
/// use cachette::memoize;
///
/// #[memoize]
/// async fn fetch_len(url: String) -> Result<usize, String> {
///     Ok(url.len()) // an HTTP request in real life
/// }
///
/// async fn demo() -> Result<(), String> {
///     assert_eq!(fetch_len("https://example.org".into()).await?, 19);
///     assert!(fetch_len::check_call_in_cache(&"https://example.org".into()).await);
///     Ok(())
/// }
/// ```
///
/// # Keys
///
/// `key = ..` replaces the hashed arguments by the value of an expression, for a result that
/// depends on part of an argument, or on a form of it that is cheaper to hash. It is evaluated
/// in the wrapper and in each function of the handle, with every argument in scope as a
/// reference (`&T`), so it cannot move an argument the body needs: copy or clone what it keeps.
/// A tuple's elements are named after their expressions in the metadata; another expression is
/// one value, named after itself.
///
/// ```
/// # use std::sync::LazyLock;
/// # use cachette::{Memory, memoize};
/// # static MEMORY: LazyLock<Memory> =
/// #     LazyLock::new(|| Memory::from_url("memory://memoize-doc-key").unwrap());
/// struct User { id: u64, name: String } // not `Serialize`: the key does not need it
///
/// #[memoize(memory = MEMORY, key = (user.id, day.clone()))]
/// fn greeting(user: &User, day: String) -> String {
///     format!("{} #{} on {day}", user.name, user.id)
/// }
///
/// let ann = User { id: 1, name: "Ann".into() };
/// assert_eq!(greeting(&ann, "monday".into()), "Ann #1 on monday");
/// let (_, metadata) = greeting::call(&ann, "monday".into());
/// assert_eq!(metadata.input_args[0], ("user.id".to_owned(), "1".to_owned()));
/// assert!(greeting::memorized().check_call_in_cache(&(1u64, "monday")));
/// ```
///
/// # Methods
///
/// In an inherent `impl` block, a method (a `self`, `&self`, `&mut self` or `self: Box<Self>`
/// receiver) is memoized with `self` hashed first among its arguments, as joblib hashes
/// `self`: `Self` must then be `Serialize` (a compile error on `self` says so otherwise).
/// `ignore = [self]` leaves it out, for a result that does not depend on it, and `key = ..`
/// can hash part of it (`key = (self.scale, x)`). A hit does not run the body: a `&mut self`
/// method changes nothing on a hit.
///
/// An associated function without `self` is memoized the same way when its signature names
/// `Self` (`fn new(n: u32) -> Self`); one that does not cannot be told from a free function
/// and does not compile in an `impl` block: memoize a free function and call it.
///
/// A method's results live under `my_crate::module::Type::method`. Its handle is a set of
/// associated functions named after it (an `impl` block cannot hold a type of the method's
/// name):
///
/// | item | what it does |
/// | --- | --- |
/// | `Type::predict_memorized() -> &'static MemorizedFunc<R>` | the memoized function; its argument is the tuple of the hashed arguments, `self` first |
/// | `value.predict_call(x)` | runs the body whatever is stored, stores and returns the output with its metadata |
/// | `value.predict_call_and_shelve(x)` | a reference to the stored result, computed first if needed |
/// | `value.predict_check_call_in_cache(&x) -> bool` | whether a call would load a stored result (it takes `&self` whatever the method's receiver) |
/// | `value.predict_explain(&x) -> Explanation` | why a call would load a stored result or not (it takes `&self` whatever the method's receiver) |
/// | `Type::predict_clear()` | deletes every stored result of the method |
///
/// (`async` for an `async fn`, as for free functions; without `self` for an associated
/// function.)
///
/// ```
/// use std::sync::LazyLock;
/// use cachette::{Memory, memoize};
/// use serde::Serialize;
///
/// static MEMORY: LazyLock<Memory> =
///     LazyLock::new(|| Memory::from_url("memory://memoize-doc-method").unwrap());
///
/// #[derive(Serialize)]
/// struct Model {
///     scale: f64,
/// }
///
/// impl Model {
///     #[memoize(memory = MEMORY)]
///     fn predict(&self, x: f64) -> f64 {
///         self.scale * x
///     }
/// }
///
/// let model = Model { scale: 2.0 };
/// assert_eq!(model.predict(3.0), 6.0);
/// assert!(model.predict_check_call_in_cache(&3.0));
/// assert!(model.predict_explain(&3.0).hit);
/// assert!(!Model { scale: 3.0 }.predict_check_call_in_cache(&3.0)); // another `self`
/// assert!(Model::predict_memorized().id().name().ends_with("::Model::predict"));
/// ```
///
/// Methods of generic `impl` blocks (type or lifetime parameters) are refused: a method's
/// results live under one static, shared by every instance of the `impl`. So are methods of
/// trait definitions and trait impls, where the handle's functions cannot be added: memoize an
/// inherent method (or a free function) and call it from there. A memoized method's name
/// followed by `_call`, `_call_and_shelve`, `_check_call_in_cache`, `_explain`, `_clear` or
/// `_memorized` must not be taken by another item of the type.
///
/// For a state that is not `Serialize` and not worth a key, a struct can also hold a
/// `MemorizedFunc` built by `Memory::cache_fn` in its constructor, hashing what it depends on:
///
/// ```
/// use cachette::{MemorizedFunc, Memory};
///
/// struct Model {
///     scale: f64,
///     predict: MemorizedFunc<f64, fn((f64, f64)) -> f64>,
/// }
///
/// impl Model {
///     fn new(memory: &Memory, scale: f64) -> Self {
///         let predict: fn((f64, f64)) -> f64 = |(scale, x)| scale * x;
///         Model {
///             scale,
///             predict: memory.cache_fn(predict).name("my_crate::Model::predict").version("1"),
///         }
///     }
///
///     fn predict(&self, x: f64) -> f64 {
///         self.predict.eval((self.scale, x))
///     }
/// }
///
/// let memory = Memory::from_url("memory://memoize-doc-constructor").unwrap();
/// let model = Model::new(&memory, 2.0);
/// assert_eq!(model.predict(3.0), 6.0);
/// assert!(model.predict.check_call_in_cache(&(2.0, 3.0)));
/// ```
///
/// # Compile errors
///
/// Generic functions, `impl Trait` arguments or outputs, `const`, `unsafe` and `extern`
/// functions, and methods of generic `impl` blocks are rejected, with an error on the offending
/// tokens. An argument, a `self` or a key that is not `Serialize`, or an output that is not
/// `Serialize + DeserializeOwned`, is one error on its type (not one per generated function),
/// and the function's callers see no error of their own.
///
/// ```compile_fail
/// # use cachette::memoize;
/// struct Point { x: u32 } // not `Serialize`
/// #[memoize]
/// fn norm(point: Point) -> u32 { point.x }
/// ```
///
/// ```compile_fail
/// # use cachette::memoize;
/// #[memoize]
/// fn generic<T: serde::Serialize>(x: T) -> u32 { 1 }
/// ```
///
/// ```compile_fail
/// # use cachette::memoize;
/// #[memoize]
/// fn total(xs: impl IntoIterator<Item = u32>) -> u32 { xs.into_iter().sum() }
/// ```
///
/// ```compile_fail
/// # use cachette::memoize;
/// #[derive(serde::Serialize)]
/// struct Table<T>(Vec<T>);
/// impl<T: serde::Serialize> Table<T> {
///     #[memoize] // a generic impl
///     fn len(&self) -> usize { self.0.len() }
/// }
/// ```
///
/// ```compile_fail
/// # use cachette::memoize;
/// #[memoize(memroy = cachette::global())] // unknown option
/// fn one() -> u32 { 1 }
/// ```
///
/// ```compile_fail
/// # use cachette::memoize;
/// #[memoize(ignore = [verbose])] // not an argument
/// fn one(x: u32) -> u32 { x }
/// ```
///
/// ```compile_fail
/// # use cachette::memoize;
/// #[memoize(key = x, ignore = [y])] // `key` hashes nothing else: there is nothing to ignore
/// fn add(x: u32, y: u32) -> u32 { x + y }
/// ```
#[proc_macro_attribute]
pub fn memoize(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let function = match syn::parse2::<syn::ItemFn>(item.clone()) {
        Ok(function) => function,
        Err(e) => {
            let message = format!("#[memoize] applies to a function: {e}");
            let error = syn::Error::new(e.span(), message).to_compile_error();
            return quote::quote!(#error #item).into();
        }
    };
    let expanded =
        options::Options::parse(attr.into()).and_then(|options| expand::expand(options, function));
    match expanded {
        Ok(tokens) => tokens.into(),
        // The function stays as it was, so that its callers do not add errors of their own.
        Err(e) => {
            let error = e.to_compile_error();
            quote::quote!(#error #item).into()
        }
    }
}

/// Memoizes a closure, identified by the hash of its tokens: `cache!(memory, |x: u64| x * x)`
/// is `memory.cache(|x: u64| x * x)` with `.code_hash(..)` set from the closure's tokens, so
/// that an edit of its body changes its identity and the results of the old body are never
/// served (`memory.cache` alone identifies a closure by where it is written, which an edit
/// that keeps it in place does not change).
///
/// ```
/// use cachette::{Memory, cache};
///
/// let memory = Memory::from_url("memory://cache-doc").unwrap();
/// let square = cache!(memory, |x: u64| x * x);
/// assert_eq!(square.eval(4), 16); // runs the closure
/// assert_eq!(square.eval(4), 16); // loads the stored result
/// ```
///
/// The first argument is anything with a `cache` method (a `Memory`, a reference to one, a
/// `static` `LazyLock<Memory>`), the second a closure that captures nothing (as for
/// [`Memory::cache`](../cachette/struct.Memory.html#method.cache)). Options follow:
/// `name = ..` (a stable name, instead of the place of the call) and `version = ..`:
///
/// ```
/// # use cachette::{Memory, cache};
/// # let memory = Memory::from_url("memory://cache-doc-options").unwrap();
/// let cube = cache!(memory, |x: u64| x * x * x, name = "my_crate::cube", version = "2");
/// assert_eq!(cube.id().name(), "my_crate::cube");
/// ```
///
/// The tokens are hashed as for `#[memoize]`: whitespace and comments do not count, any other
/// change does. What the closure calls is not hashed: change `version` when that changes.
///
/// ```compile_fail
/// # use cachette::{Memory, cache};
/// # let memory = Memory::disabled();
/// fn square(x: u64) -> u64 { x * x }
/// let f = cache!(memory, square); // a function, not a closure: use `memory.cache(square)`
/// ```
#[proc_macro]
pub fn cache(input: TokenStream) -> TokenStream {
    match syn::parse::<closure::CacheInput>(input) {
        Ok(input) => closure::expand(input).into(),
        Err(e) => e.to_compile_error().into(),
    }
}
