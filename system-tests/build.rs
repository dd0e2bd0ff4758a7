// The tests' `#[sqlx::test(migrations = "../migrations")]` embed the migrations; rebuild them
// when one is added or changed (otherwise a test binary that was not edited runs the old set).
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
