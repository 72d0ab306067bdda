fn main() {
    println!("weir-agent");
}
