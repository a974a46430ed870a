// A use-after-free in a Rust release build (no frame pointers, as cargo builds by default):
// the object comes from Box (std's __rust_alloc -> malloc), its address outlives the Box.
use std::hint::black_box;

#[inline(never)]
fn stale_pointer() -> *const u8 {
    let b = Box::new([7u8; 48]);
    let p = black_box(b.as_ptr());
    drop(b);
    p
}

#[inline(never)]
fn use_it(p: *const u8) -> u8 {
    unsafe { std::ptr::read_volatile(p) }
}

fn main() {
    println!("pid={}", std::process::id());
    let p = stale_pointer();
    println!("buf={:#x}", p as usize);
    let v = use_it(black_box(p));
    println!("v={}\ndone", v);
}
