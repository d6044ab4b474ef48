//! Tests of `expand.rs`.

use super::*;
use syn::Type;

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
const HANDLE: [&str; 7] = [
    "memorized",
    "__cachette_body",
    "call",
    "call_and_shelve",
    "check_call_in_cache",
    "clear",
    "explain",
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
        (
            "",
            "fn m<T>(&self, x: T) -> u32 { 1 }",
            "cannot memoize a generic function",
        ),
        (
            "key = x, ignore = [y]",
            "fn f(x: u32, y: u32) -> u32 { x }",
            "`key` and `ignore` cannot be used together",
        ),
        (
            "ignore = [y], key = x",
            "fn f(x: u32, y: u32) -> u32 { x }",
            "`key` and `ignore` cannot be used together",
        ),
        (
            "key = x, key = y",
            "fn f(x: u32, y: u32) -> u32 { x }",
            "duplicate #[memoize] option `key`",
        ),
        (
            "ignore = [self]",
            "fn f(x: u32) -> u32 { x }",
            "cannot ignore `self`",
        ),
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
    assert_ne!(
        hash_of("key = x", "fn f(x: u32, y: u32) -> u32 { x + y }"),
        hash_of("key = (x, y)", "fn f(x: u32, y: u32) -> u32 { x + y }")
    );
    let hash = hash_of;
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

#[test]
fn methods_get_associated_functions() {
    let tokens = expand(
        Options::parse(TokenStream::new()).unwrap(),
        syn::parse_str("pub fn predict(&self, x: u64) -> u64 { x }").unwrap(),
    )
    .unwrap();
    let block: syn::ItemImpl = syn::parse2(quote!(impl S { #tokens })).unwrap();
    let names: Vec<String> = block
        .items
        .iter()
        .map(|item| match item {
            syn::ImplItem::Fn(f) => f.sig.ident.to_string(),
            _ => "other".to_owned(),
        })
        .collect();
    assert_eq!(
        names,
        [
            "predict",
            "__cachette_predict",
            "predict_memorized",
            "predict_call",
            "predict_call_and_shelve",
            "predict_check_call_in_cache",
            "predict_clear",
            "predict_explain",
        ]
    );
    // `Self` in a signature makes an associated function.
    assert!(is_associated(
        &syn::parse_str("fn new(n: u32) -> Self").unwrap()
    ));
    assert!(is_associated(
        &syn::parse_str("fn eq(a: &Self, b: &Self) -> bool").unwrap()
    ));
    assert!(!is_associated(
        &syn::parse_str("fn f(n: u32) -> u32").unwrap()
    ));
}

#[test]
fn at_most_sixteen_hashed_arguments() {
    let args: Vec<String> = (0..17).map(|i| format!("a{i}: u8")).collect();
    let item = format!("fn f({}) {{}}", args.join(", "));
    assert!(error_of("", &item).contains("hashes at most 16 arguments"));
    assert!(expand_str("ignore = [a0]", &item).is_ok());
    assert!(expand_str("key = a0", &item).is_ok());
    let method = format!("fn f(&self, {}) {{}}", args[..16].join(", "));
    assert!(error_of("", &method).contains("(`f` has 17)"));
    assert!(
        expand(
            Options::parse("ignore = [self]".parse().unwrap()).unwrap(),
            syn::parse_str(&method).unwrap()
        )
        .is_ok()
    );
}

#[test]
fn keys_see_self_as_a_local() {
    let this = Ident::new("__cachette_self", Span::call_site());
    let replaced = replace_self(quote!((self.id, f(self), self::g(x))), &this);
    assert_eq!(
        replaced.to_string(),
        "(__cachette_self . id , f (__cachette_self) , self :: g (x))"
    );
    assert_eq!(
        compact(quote!((user.id, day.clone()))),
        "(user.id, day.clone())"
    );
    assert_eq!(compact(quote!(text.len())), "text.len()");
    assert_eq!(compact(quote!(a::b(&x[0]))), "a::b(&x[0])");
}

fn hash_of(attr: &str, item: &str) -> String {
    let options = Options::parse(attr.parse().unwrap()).unwrap();
    let item: ItemFn = syn::parse_str(item).unwrap();
    let output = output(&item.sig, options.result).unwrap();
    code_hash(&item, &options, &output)
}
