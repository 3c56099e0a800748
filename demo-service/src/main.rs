fn main() {
    taskscope_demo::main()
}
