//! Tests of `expand.rs`.

use super::*;

fn expand_str(attr: &str, item: &str) -> syn::Result<syn::File> {
    let options = Options::parse(attr.parse().unwrap())?;
    let tokens = expand(options, syn::parse_str(item).unwrap())?;
    Ok(syn::parse2(tokens).expect("the expansion parses as items"))
}

fn error_of(attr: &str, item: &str) -> String {
    match expand_str(attr, item) {
        Ok(_) => panic!("expected an error for #[memoize({attr})] {item}"),
        Err(e) => e.to_string(),
    }
}

fn impl_fns(file: &syn::File) -> Vec<String> {
    let mut names = Vec::new();
    for item in &file.items {
        if let syn::Item::Impl(block) = item {
            for item in &block.items {
                if let syn::ImplItem::Fn(f) = item {
                    names.push(f.sig.ident.to_string());
                }
            }
        }
    }
    names
}

#[test]
fn a_function_becomes_a_wrapper_a_type_and_its_handle() {
    let file = expand_str("memory = MEMORY", "pub fn square(x: u64) -> u64 { x * x }").unwrap();
    let kinds: Vec<&str> = file
        .items
        .iter()
        .map(|item| match item {
            syn::Item::Fn(f) if f.sig.ident == "square" => "fn",
            syn::Item::Enum(e) if e.ident == "square" => "enum",
            syn::Item::Impl(_) => "impl",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["fn", "enum", "impl"]);
    assert_eq!(impl_fns(&file), HANDLE);
}

/// The associated functions of every handle, sync or async.
const HANDLE: [&str; 6] = [
    "memorized",
    "__cachette_body",
    "call",
    "call_and_shelve",
    "check_call_in_cache",
    "clear",
];

#[test]
fn async_functions_have_the_same_handle() {
    let file = expand_str("", "async fn fetch(id: u32) -> String { id.to_string() }").unwrap();
    assert_eq!(impl_fns(&file), HANDLE);
}

#[test]
fn what_cannot_be_memoized_is_an_error() {
    let cases = [
        (
            "",
            "fn m(&self, x: u32) -> u32 { x }",
            "cannot memoize a method",
        ),
        (
            "",
            "fn g<T>(x: T) -> u32 { 1 }",
            "cannot memoize a generic function",
        ),
        (
            "",
            "fn g<const N: usize>() -> u32 { 1 }",
            "generic function",
        ),
        (
            "",
            "fn f(x: impl Clone) -> u32 { 1 }",
            "`impl Trait` argument",
        ),
        (
            "",
            "fn f(x: u32) -> impl Clone { x }",
            "returning `impl Trait`",
        ),
        ("", "fn f(x: Self) -> u32 { 1 }", "`Self` has no meaning"),
        ("", "const fn f() -> u32 { 1 }", "`const fn`"),
        ("", "unsafe fn f() -> u32 { 1 }", "`unsafe fn`"),
        ("", "extern \"C\" fn f() -> u32 { 1 }", "`extern` function"),
        (
            "ignore = [y]",
            "fn f(x: u32) -> u32 { x }",
            "cannot ignore `y`",
        ),
        (
            "memroy = M",
            "fn f() {}",
            "unknown #[memoize] option `memroy`",
        ),
        (
            "verbose = 1, verbose = 2",
            "fn f() {}",
            "duplicate #[memoize] option",
        ),
        (
            "mmap_mode = \"rw\"",
            "fn f() {}",
            "unknown mmap mode \"rw\"",
        ),
        (
            "result",
            "fn f() -> u32 { 1 }",
            "`result` needs a return type",
        ),
        (
            "strict",
            "fn f() -> u32 { 1 }",
            "`strict` needs a function returning a `Result`",
        ),
        (
            "strict, result = false",
            "fn f() -> Result<u32, E> { Ok(1) }",
            "`strict` needs a function returning a `Result`",
        ),
        (
            "strict = yes",
            "fn f() -> Result<u32, E> { Ok(1) }",
            "expected boolean literal",
        ),
    ];
    for (attr, item, expected) in cases {
        let error = error_of(attr, item);
        assert!(error.contains(expected), "{attr} / {item}: {error}");
    }
}

#[test]
fn which_return_types_are_results() {
    let sig = |s: &str| -> Signature { syn::parse_str(s).unwrap() };
    let ok = |s: &str, forced: Option<bool>| {
        output(&sig(s), forced)
            .unwrap()
            .ok
            .map(|t| t.to_token_stream().to_string())
    };
    assert_eq!(ok("fn f() -> Result<u32, E>", None).as_deref(), Some("u32"));
    assert_eq!(
        ok("fn f() -> std::io::Result<Vec<u8>>", None).as_deref(),
        Some("Vec < u8 >")
    );
    assert_eq!(ok("fn f() -> Result<u32, E>", Some(false)), None);
    assert_eq!(ok("fn f() -> Option<u32>", None), None);
    assert_eq!(ok("fn f() -> Fallible<u32>", None), None);
    assert_eq!(
        ok("fn f() -> Fallible<u32>", Some(true)).as_deref(),
        Some("u32")
    );
    assert_eq!(ok("fn f()", None), None);
    let ret: Type = parse_quote!(io::Result<u32>);
    let shelved = with_first_argument(&ret, parse_quote!(Shelved<u32>));
    assert_eq!(
        shelved.to_token_stream().to_string(),
        "io :: Result < Shelved < u32 > >"
    );
}

#[test]
fn the_code_hash_follows_tokens_and_options() {
    let hash = |attr: &str, item: &str| {
        let options = Options::parse(attr.parse().unwrap()).unwrap();
        let item: ItemFn = syn::parse_str(item).unwrap();
        let output = output(&item.sig, options.result).unwrap();
        code_hash(&item, &options, &output)
    };
    let base = hash("", "fn f(x: u32, y: u32) -> u32 { x + y }");
    assert_eq!(
        base,
        hash(
            "",
            "/// Docs do not count.\n#[inline]\nfn f(x: u32, y: u32) -> u32 {\n    x + y // nor comments\n}"
        )
    );
    assert_ne!(base, hash("", "fn f(x: u32, y: u32) -> u32 { y + x }"));
    assert_ne!(
        base,
        hash("ignore = [y]", "fn f(x: u32, y: u32) -> u32 { x + y }")
    );
    assert_eq!(
        base,
        hash(
            "memory = M, verbose = 2",
            "fn f(x: u32, y: u32) -> u32 { x + y }"
        )
    );
}
