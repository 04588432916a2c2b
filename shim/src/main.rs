//! `boundary-runc`: see the library's `cli` module.

fn main() {
    boundary_runc::cli::main()
}
