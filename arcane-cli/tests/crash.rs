//! Crashes: a run killed with SIGKILL at any moment, including in the middle of writing a
//! checkpoint, resumes to exactly the weights of a run in one go; a checkpoint that cannot be
//! written stops the run with a clear error and keeps the last good one.

mod common;

#[cfg(unix)]
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::json;

/// The moments the crash hook (`ARCANE_TEST_CRASH`) kills a run at, in the order they come:
/// a model file written but not yet under its name, all files of checkpoint 12 written but
/// not its state file, the state file of 16 written but not renamed, and checkpoint 20
/// complete while checkpoint 12 is half deleted (`prune:N` names the checkpoint deleted).
const CRASH_POINTS: [&str; 4] = [
    "before-rename:model-8.mpk",
    "before-state:12",
    "before-rename:state-16.json",
    "prune:12",
];

/// A small linear congruential generator: the moments of the random kills, seeded.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn killed_anywhere_a_run_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = prepare(tmp.path());
    let cfg = config(
        tmp.path(),
        json!({"max_steps": 32, "checkpoint_every": 4, "eval_every": 4, "keep_checkpoints": 2}),
    );
    let whole = tmp.path().join("whole");
    ok(&mut train_cmd(&cfg, &data, &whole));

    let pieces = tmp.path().join("pieces");
    for (i, point) in CRASH_POINTS.iter().enumerate() {
        let mut cmd = if i == 0 {
            train_cmd(&cfg, &data, &pieces)
        } else {
            resume_cmd(&pieces)
        };
        let out = run(cmd.env(arcane::io::CRASH_VAR, point));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{point}: the run was not killed: {stderr}"
        );
        #[cfg(unix)]
        assert_eq!(out.status.signal(), Some(9), "{point}: {stderr}");
        assert!(
            stderr.contains(&format!("killing this process at {point}")),
            "{stderr}"
        );
    }
    assert_eq!(
        checkpoint_steps(&pieces),
        vec![16, 20],
        "12 was being pruned"
    );

    // SIGKILL at seeded random moments of the rest of the run.
    let mut rng = Lcg(2024);
    for _ in 0..3 {
        let mut child = resume_cmd(&pieces)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200 + rng.below(600)));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    ok(&mut resume_cmd(&pieces));
    assert_same_run(&whole, &pieces, 32);
    assert_eq!(
        leftovers(&pieces),
        Vec::<String>::new(),
        "no temporary or incomplete files remain"
    );
}

/// Killed after its final checkpoint was complete but before the run folder's model files were
/// rewritten (here: while the oldest checkpoint is pruned), a run's resume finds it finished
/// and still leaves the final weights in the run folder, not those of the checkpoint before.
#[test]
fn killed_after_its_last_checkpoint_a_run_ends_with_its_final_model() {
    let tmp = tempfile::tempdir().unwrap();
    let data = prepare(tmp.path());
    let cfg = config(
        tmp.path(),
        json!({"max_steps": 12, "checkpoint_every": 4, "eval_every": 4, "keep_checkpoints": 2}),
    );
    let whole = tmp.path().join("whole");
    ok(&mut train_cmd(&cfg, &data, &whole));

    let pieces = tmp.path().join("pieces");
    // Checkpoint 12 is complete when checkpoint 4 is pruned.
    let out = run(train_cmd(&cfg, &data, &pieces).env(arcane::io::CRASH_VAR, "prune:4"));
    assert!(!out.status.success(), "the run was not killed");
    ok(&mut resume_cmd(&pieces));
    assert_same_tensors(
        &whole.join("model.safetensors"),
        &pieces.join("model.safetensors"),
    );
}

#[test]
fn a_checkpoint_that_cannot_be_written_keeps_the_last_good_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = prepare(tmp.path());
    let cfg = config(
        tmp.path(),
        json!({"max_steps": 12, "checkpoint_every": 4, "eval_every": 4, "keep_checkpoints": 3}),
    );
    let whole = tmp.path().join("whole");
    ok(&mut train_cmd(&cfg, &data, &whole));

    // A folder where the optimizer file of checkpoint 8 must go: its rename fails, as a full
    // disk or a read-only folder would make it fail (chmod cannot stop root, who runs CI).
    let blocked = tmp.path().join("blocked");
    let blocker = blocked.join("checkpoint/optim-8.mpk");
    std::fs::create_dir_all(blocker.join("x")).unwrap();
    let err = fails(&mut train_cmd(&cfg, &data, &blocked));
    assert!(
        err.contains("training failed at step 8")
            && err.contains("optim-8.mpk")
            && err.contains("the last good checkpoint (step 4) is intact"),
        "{err}"
    );
    assert_eq!(checkpoint_steps(&blocked), vec![4]);
    std::fs::remove_dir_all(&blocker).unwrap();
    ok(&mut resume_cmd(&blocked));
    assert_same_run(&whole, &blocked, 12);

    // A run folder that is a file.
    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = fails(&mut train_cmd(&cfg, &data, &file));
    assert!(err.contains("file"), "{err}");
}
