//! The README's media backup for the local store (Backups and restore, "Media"): the
//! documented `tar` command, run on a store the app has written, brings back every file
//! byte for byte into an emptied `MEDIA_ROOT`, and leaves the staging area out.

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use common::TestApp;

/// Every file under `root` but the staging area, by path relative to it.
fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let rel = path.strip_prefix(root).expect("under root").to_path_buf();
            if rel.starts_with(".staging") {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(rel, std::fs::read(&path).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run tar");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn the_documented_tar_backup_restores_every_media_file() {
    let app = TestApp::new().await;
    let (_writer, r) = common::post_story_with_cover(&app, &app::seed::gradient_png(64, 48, [10, 20, 30], [200, 100, 50])).await;
    r.assert_status(303);
    let root = app.state.config.media_root.clone();
    let before = files(&root);
    assert!(!before.is_empty(), "the upload stored its original under MEDIA_ROOT");
    // A write in progress (as the store leaves it until its rename): not backed up.
    std::fs::create_dir_all(root.join(".staging")).unwrap();
    std::fs::write(root.join(".staging/partial"), b"half a file").unwrap();

    let archive = app.mail_dir.join("media-backup.tar.gz");
    run(Command::new("tar").arg("-czf").arg(&archive).args(["--exclude", "./.staging", "-C"]).arg(&root).arg("."));
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    run(Command::new("tar").arg("-xzf").arg(&archive).arg("-C").arg(&root));

    assert_eq!(files(&root), before, "every file back, byte for byte");
    assert!(!root.join(".staging").exists(), "the staging area is not in the backup");
}
