//! The `#[memoize]` attribute macro of Cachette.
//!
//! Use it through the `cachette` crate (`cachette::memoize`), which the generated code refers
//! to; see [`macro@memoize`].

#![forbid(unsafe_code)]

mod expand;
mod fingerprint;
mod options;

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
/// | `ignore` | `[name, ...]`: arguments left out of the hash, by name (identifiers or strings). Calls that differ only in them share a result; they need not be `Serialize`. | none |
/// | `version` | a string (`impl Into<String>`), added to the function's identity: changing it discards the stored results. | none |
/// | `validate` | anything `Into<Validation>`: a closure `Fn(&Metadata) -> bool` or `cachette::expires_after(..)`. A stored result it rejects is computed again. | none |
/// | `verbose` | the function's verbosity (`u8`), instead of the memory's. | the memory's |
/// | `mmap_mode` | how the arrays of outputs are loaded: a joblib name (`"r"`, `"c"`, `"r+"`, `"w+"`, `"none"`), checked at compile time, or an expression of type `MmapMode`. | the memory's |
/// | `name` | the function's name in the store (`impl Into<String>`), instead of its path. | its path |
/// | `result` | `result` or `result = true/false`: whether the return type is a `Result` whose `Ok` alone is stored (see below). | from the return type |
/// | `compute_once` | a `bool` expression: whether concurrent misses of one key compute it once, the other callers waiting (see `MemoryBuilder::compute_once`). | the memory's |
/// | `strict` | `strict` or `strict = true/false`: faults of the store (unreadable, unwritable, a damaged entry) are returned as the function's error instead of warning and computing. Needs a `Result` return type whose error type implements `From<cachette::Error>` (`anyhow::Error`, `Box<dyn Error + Send + Sync>`, ...). | `false` |
///
/// An unknown option is a compile error.
///
/// # Arguments and output
///
/// The arguments that are not ignored are hashed as a tuple, so they need `Serialize`; the
/// body gets every argument by value, as before. The output is stored, so it needs `Serialize`
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
/// | `square::clear() -> Result<(), Error>` | deletes every stored result of the function |
///
/// For a `Result` return type `R<T, ..>`, `call` returns `R<(T, Metadata), ..>` and
/// `call_and_shelve` returns `R<Shelved<T>, ..>`: `Err` is returned and nothing is stored.
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
/// `memorized()`, and `call(..)`, `call_and_shelve(..)`, `check_call_in_cache(..)` and
/// `clear()` as `async fn`s.
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
/// # Methods
///
/// `#[memoize]` applies to free functions. For a method, memoize at construction and leave
/// `self` out of the hash (joblib's advice for methods), in one of two ways: the method calls a
/// memoized free function with what the result depends on,
///
/// ```
/// use std::sync::LazyLock;
/// use cachette::{Memory, memoize};
///
/// static MEMORY: LazyLock<Memory> =
///     LazyLock::new(|| Memory::from_url("memory://memoize-doc-method").unwrap());
///
/// struct Model {
///     scale: f64,
///     cache_hits: u32, // not part of any result
/// }
///
/// #[memoize(memory = MEMORY)]
/// fn model_predict(scale: f64, x: f64) -> f64 {
///     scale * x
/// }
///
/// impl Model {
///     fn predict(&self, x: f64) -> f64 {
///         model_predict(self.scale, x)
///     }
/// }
///
/// let model = Model { scale: 2.0, cache_hits: 0 };
/// assert_eq!(model.predict(3.0), 6.0);
/// assert!(model_predict::check_call_in_cache(&2.0, &3.0));
/// # let _ = model.cache_hits;
/// ```
///
/// or the struct holds a `MemorizedFunc` built by `Memory::cache` in its constructor:
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
/// Methods (a `self` receiver), generic functions, `impl Trait` arguments or outputs, `const`,
/// `unsafe` and `extern` functions are rejected, with an error on the offending tokens:
///
/// ```compile_fail
/// # use cachette::memoize;
/// struct S;
/// impl S {
///     #[memoize]
///     fn method(&self, x: u32) -> u32 { x }
/// }
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
/// #[memoize(memroy = cachette::global())] // unknown option
/// fn one() -> u32 { 1 }
/// ```
///
/// ```compile_fail
/// # use cachette::memoize;
/// #[memoize(ignore = [verbose])] // not an argument
/// fn one(x: u32) -> u32 { x }
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
