use cachette::memoize;
use serde::Serialize;

#[derive(Serialize)]
struct Table<T> {
    rows: Vec<T>,
}

impl<T: Serialize> Table<T> {
    #[memoize]
    fn len(&self) -> usize {
        self.rows.len()
    }
}

fn main() {}
