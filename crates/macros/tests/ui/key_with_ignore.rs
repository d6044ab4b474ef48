use cachette::memoize;

#[memoize(key = id, ignore = [verbose])]
fn lookup(id: u64, verbose: bool) -> u64 {
    let _ = verbose;
    id
}

fn main() {}
