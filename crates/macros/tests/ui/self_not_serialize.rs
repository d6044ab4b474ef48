use cachette::memoize;

struct Model {
    scale: u64,
}

impl Model {
    #[memoize]
    fn predict(&self, x: u64) -> u64 {
        self.scale * x
    }
}

fn main() {
    let _ = Model { scale: 2 }.predict(1);
}
