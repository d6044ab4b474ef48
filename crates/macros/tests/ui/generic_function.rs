use cachette::memoize;

#[memoize]
fn first<T: Clone + serde::Serialize + serde::de::DeserializeOwned>(items: Vec<T>) -> T {
    items[0].clone()
}

fn main() {}
