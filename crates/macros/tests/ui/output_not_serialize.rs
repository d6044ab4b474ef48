use cachette::memoize;

struct Report {
    total: u32,
}

#[memoize]
fn report(x: u32) -> Report {
    Report { total: x }
}

fn main() {
    let _ = report(1).total;
    let _ = report::call(1);
}
