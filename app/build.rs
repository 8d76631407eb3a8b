// Release builds embed templates/ and static/ (include_dir); make cargo notice files
// added to or removed from them, not only edits.
fn main() {
    println!("cargo:rerun-if-changed=../templates");
    println!("cargo:rerun-if-changed=../static");
    println!("cargo:rerun-if-changed=../migrations");
}
