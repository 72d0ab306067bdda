fn main() {
    println!("weir-api");
}
