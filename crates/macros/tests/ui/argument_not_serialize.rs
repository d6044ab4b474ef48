use cachette::memoize;

struct Point {
    x: u32,
}

#[memoize]
fn norm(point: Point, scale: u32) -> u32 {
    point.x * scale
}

fn main() {
    // Callers see no error of their own.
    norm(Point { x: 1 }, 2);
}
