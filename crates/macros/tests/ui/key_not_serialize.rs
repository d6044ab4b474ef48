use cachette::memoize;

struct Id(u64);

#[memoize(key = Id(*raw))]
fn lookup(raw: u64) -> u64 {
    raw
}

fn main() {}
