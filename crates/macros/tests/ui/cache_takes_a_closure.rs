fn square(x: u64) -> u64 {
    x * x
}

fn main() {
    let memory = cachette::Memory::disabled();
    let _ = cachette::cache!(memory, square);
}
