//! Epochs only rise, and what is signed again was verified first: `build` refuses an `--epoch`
//! not above the snapshot at `--out` (or named by `--replaces`), `update` one not above the
//! snapshot it starts from, and `update --dp-key` needs `--dp-pub` and a base that verifies.
//! Every refusal comes before the long work and writes nothing.

mod common;

use pir_core::CoreError;
use pir_dp::{self as tools, DpError, EpochFloor};

use common::Setup;

#[test]
fn build_refuses_an_epoch_not_above_the_snapshot_it_replaces_at_out() {
    let s = Setup::new(50);
    s.build("db.pirsnap", Some(2000)).unwrap();
    let before = std::fs::read(s.path("db.pirsnap")).unwrap();
    let salt = s.salt_of("db.pirsnap");
    // Lower, and the same epoch (another build would bring its own salt: the dangerous case).
    for epoch in [1500, 2000] {
        let err = s.build("db.pirsnap", Some(epoch)).unwrap_err();
        assert!(
            matches!(&err, DpError::EpochNotRising { epoch: e, floor: 2000, path, role: EpochFloor::Out }
                if *e == epoch && path == &s.path("db.pirsnap")),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "--epoch {epoch} is not above epoch 2000 of {} (which --out would replace): \
                 give a higher --epoch, or leave it out (the default is the later of now and \
                 2001)",
                s.path("db.pirsnap").display()
            )
        );
    }
    assert_eq!(std::fs::read(s.path("db.pirsnap")).unwrap(), before);
    assert_eq!(s.salt_of("db.pirsnap"), salt);
    // Higher is fine; so is the default, which rises above a future epoch too.
    s.build("db.pirsnap", Some(2001)).unwrap();
    assert_eq!(s.epoch_of("db.pirsnap"), 2001);
    let future = pir_core::unix_now() + 1_000_000;
    s.build("db.pirsnap", Some(future)).unwrap();
    let summary = s.build("db.pirsnap", None).unwrap();
    assert_eq!(summary.header.epoch, future + 1);
    // An --out that is not a snapshot has no epoch to rise above: it is replaced as before.
    std::fs::write(s.path("junk.pirsnap"), b"not a snapshot").unwrap();
    s.build("junk.pirsnap", Some(1)).unwrap();
    assert_eq!(s.epoch_of("junk.pirsnap"), 1);
}

#[test]
fn build_replaces_names_the_served_snapshot_when_out_is_a_new_name() {
    let s = Setup::new(50);
    s.build("db-1.pirsnap", Some(2000)).unwrap();
    std::os::unix::fs::symlink(s.path("db-1.pirsnap"), s.path("current.pirsnap")).unwrap();
    let with = |epoch| tools::BuildArgs {
        replaces: Some(s.path("current.pirsnap")),
        ..s.build_args("db-2.pirsnap", epoch)
    };
    let err = tools::build(&with(Some(2000))).unwrap_err();
    assert!(
        matches!(
            &err,
            DpError::EpochNotRising {
                floor: 2000,
                role: EpochFloor::Replaces,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("(named by --replaces)"), "{err}");
    assert!(!s.path("db-2.pirsnap").exists(), "nothing written");
    tools::build(&with(Some(2001))).unwrap();
    assert_eq!(s.epoch_of("db-2.pirsnap"), 2001);
    // A --replaces that cannot be read is an error of its own, not a silent pass.
    let err = tools::build(&tools::BuildArgs {
        replaces: Some(s.path("absent.pirsnap")),
        ..s.build_args("db-3.pirsnap", Some(3000))
    })
    .unwrap_err();
    assert!(matches!(&err, DpError::Core(CoreError::Io { .. })), "{err}");
}

#[test]
fn update_refuses_an_epoch_not_above_the_one_it_starts_from() {
    let s = Setup::new(50);
    s.build("db.pirsnap", Some(2000)).unwrap();
    for epoch in [1500, 2000] {
        let err =
            tools::update(&s.update_args("db.pirsnap", "new.pirsnap", Some(epoch))).unwrap_err();
        assert!(
            matches!(&err, DpError::EpochNotRising { floor: 2000, role: EpochFloor::Updated, path, .. }
                if path == &s.path("db.pirsnap")),
            "{err}"
        );
        assert!(
            err.to_string().contains(&format!(
                "--epoch {epoch} is not above epoch 2000 of {} (the snapshot this update starts \
                 from)",
                s.path("db.pirsnap").display()
            )),
            "{err}"
        );
        assert!(!s.path("new.pirsnap").exists(), "nothing written");
    }
    let done = tools::update(&s.update_args("db.pirsnap", "new.pirsnap", Some(2001))).unwrap();
    assert_eq!((done.old_epoch, done.header.epoch), (2000, 2001));
    // An existing --out counts too: it would be replaced by an older snapshot.
    let err = tools::update(&s.update_args("db.pirsnap", "new.pirsnap", Some(2001))).unwrap_err();
    assert!(
        matches!(
            &err,
            DpError::EpochNotRising {
                floor: 2001,
                role: EpochFloor::Out,
                ..
            }
        ),
        "{err}"
    );
    // The default rises above both.
    let done = tools::update(&s.update_args("db.pirsnap", "new.pirsnap", None)).unwrap();
    assert!(done.header.epoch > 2001);
}

#[test]
fn update_signs_only_what_verified_first() {
    let s = Setup::new(50);
    let run = |dp_pub: &str| tools::UpdateRun {
        dp_pub: Some(s.path(dp_pub)),
        progress: false,
    };
    let signing = |snapshot: &str| tools::UpdateArgs {
        dp_key: Some(s.path("dp.key")),
        ..s.update_args(snapshot, "new.pirsnap", None)
    };
    tools::build(&tools::BuildArgs {
        dp_key: Some(s.path("dp.key")),
        ..s.build_args("signed.pirsnap", Some(10))
    })
    .unwrap();
    s.build("unsigned.pirsnap", Some(10)).unwrap();
    tools::build(&tools::BuildArgs {
        dp_key: Some(s.path("other.key")),
        ..s.build_args("foreign.pirsnap", Some(10))
    })
    .unwrap();

    // --dp-key without --dp-pub: refused, whatever the base.
    let err = tools::update(&signing("signed.pirsnap")).unwrap_err();
    assert!(
        matches!(&err, DpError::SigningUnverified { snapshot } if snapshot == &s.path("signed.pirsnap")),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "update --dp-key signs the new snapshot, which vouches for everything it carries \
             over from {}: pass the DP's public keys with --dp-pub so that it is verified first",
            s.path("signed.pirsnap").display()
        )
    );
    // A base that does not verify against --dp-pub: refused (exit code 3 in the CLI).
    for (base, reason) in [
        ("unsigned.pirsnap", "not signed by a DP key"),
        ("foreign.pirsnap", "unknown DP key"),
    ] {
        let err = tools::update_with(&signing(base), &run("dp.pub")).unwrap_err();
        assert!(err.is_refusal(), "{err}");
        assert!(
            matches!(&err, DpError::Refused { path, .. } if path == &s.path(base)),
            "{err}"
        );
        assert!(err.to_string().contains(reason), "{err}");
    }
    assert!(!s.path("new.pirsnap").exists(), "nothing written");
    // A base that verifies: updated and signed again.
    let done = tools::update_with(&signing("signed.pirsnap"), &run("dp.pub")).unwrap();
    assert!(done.header.signature.is_some());
    tools::verify(&s.path("new.pirsnap"), Some(&s.path("dp.pub")), false).unwrap();
}
