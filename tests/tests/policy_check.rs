//! `boundary-runc policy check`: exit status 0 allow, 1 deny, 2 invalid.
//! Needs the built binaries, not root.

use boundary_tests::{binaries, Runtime, Settings};

fn check(rt: &Runtime, args: &[&str]) -> boundary_tests::Outcome {
    let mut all = vec!["policy", "check"];
    all.extend_from_slice(args);
    rt.raw(&all)
}

#[test]
fn policy_check_exit_codes() {
    binaries();
    // Slot 0: no jail is ever built.
    let rt = Runtime::new(Settings::new(0));
    let cases: [(&[&str], i32); 8] = [
        (&["--allow", "domain=github.com", "GET", "https://github.com/repos"], 0),
        (&["--allow", "domain=*.github.com", "GET", "https://v1.api.github.com/x"], 0),
        (&["--allow", "domain=github.com;method=GET domain=pypi.org", "GET", "https://pypi.org/simple"], 0),
        (&["--allow", "domain=github.com", "GET", "https://api.github.com/repos"], 1),
        (&["--allow", "method=GET,HEAD domain=github.com", "POST", "https://github.com/x"], 1),
        (&["GET", "https://github.com/"], 1),
        (&["--allow", "domain=github.*", "GET", "https://github.com/"], 2),
        (&["--allow", "domain=github.com", "GET", "github.com"], 2),
    ];
    for (args, want) in cases {
        let out = check(&rt, args);
        assert_eq!(out.code, Some(want), "policy check {args:?}:\n{out}");
    }
    let out = check(&rt, &["--allow", "domain=github.com", "GET", "https://api.github.com/repos"]);
    assert!(out.stdout.starts_with("deny "), "{out}");
    let out = check(&rt, &["--allow", "domain=github.*", "GET", "https://github.com/"]);
    assert!(out.stderr.contains("github.*"), "an invalid rule is named:\n{out}");
}
