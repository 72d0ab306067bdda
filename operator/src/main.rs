fn main() {
    println!("weir-operator");
}
